"""Procedurally drawn faces in the exact CelebA + MAFL layout: a built-in data set, no download.

    python -m datasets.synthetic --out data/synthetic --num-images 2000 --seed 0

writes, under --out::

    Img/img_align_celeba/000001.jpg ...   178x218 faces centred as in CelebA, heads rolled in the wild
    Anno/list_landmarks_align_celeba.txt  count line, CelebA header, `name x1 y1 ... x5 y5` (ints)
    MAFL/training.txt, MAFL/testing.txt   first 90 % / last 10 % of the names, no final newline

plus `synthetic.json` (generator version, number of images, seed), written last, so that `--reuse`
can tell a finished set of the same recipe from an old or partial one; it also marks the root as synthetic
faces (`is_synthetic_root`), which extraction records and reports name. Every CelebA/MAFL reader in
this package reads the set unchanged (train kind "synthetic" or "celeba"; eval splits "mafl-train",
"mafl-test").

Faces vary in identity (face shape, eye spacing, nose length, mouth width), expression (smile,
open mouth), pose (roll, scale, shift, a yaw that moves the features sideways against the face
outline) and appearance (skin, hair colour and shape, textured and cluttered backgrounds, a
lighting gradient, noise, blur, JPEG quality). Feature placement follows the CelebA medians
(eyes near (69, 111) and (108, 111), nose (88, 136), mouth corners (72, 152) and (105, 152)).

Ground truth is exact: the geometry is computed in floating point, each landmark is rounded to
an integer pixel, and its marker is drawn centred on that pixel with symmetric shapes — the pupil
for an eye, the tip highlight for the nose, a corner dot for a mouth corner (`draw_markers`).
`render_face(..., features_only=True)` draws only those markers, in flat `MARKER_COLOURS`, for
tests. Image i of seed s uses `np.random.default_rng([s, i])`, so output bytes depend only on
(seed, index) and the OpenCV build.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets.celeba import LANDMARK_FILE, LANDMARK_HEADER, MAFL_TEST_FILE, MAFL_TRAIN_FILE
from utils.errors import UserError

IMAGE_WH = (178, 218)
IMAGE_DIR = Path("Img") / "img_align_celeba"
TEST_FRACTION = 0.1
# Canonical placement, image pixels: face centre, and feature offsets at scale 1.
FACE_CENTRE_XY = (88.5, 122.0)
EYE_HALF_SPACING = 19.5
EYE_Y = -11.0
NOSE_LENGTH = 24.5
MOUTH_GAP = 16.5
MOUTH_HALF_WIDTH = 16.0
FACE_HALF_AXES = (45.0, 62.0)  # face oval half-width and half-height
# Depth of each feature in front of the face-oval centre, for the yaw shift.
EYE_DEPTH, NOSE_DEPTH, MOUTH_DEPTH, OUTLINE_DEPTH = 14.0, 32.0, 16.0, -6.0
# BGR colours of the landmark markers in features_only renders; order of LANDMARK_NAMES.
MARKER_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255))
SKIN_TONES_BGR = ((180, 200, 240), (150, 180, 225), (120, 150, 200), (90, 120, 170),
                  (60, 85, 130), (45, 60, 95), (165, 195, 230))
HAIR_COLOURS_BGR = ((20, 20, 25), (25, 40, 70), (40, 70, 120), (90, 150, 200), (40, 60, 150),
                    (150, 150, 150), (210, 210, 215))
IRIS_COLOURS_BGR = ((30, 70, 110), (150, 110, 60), (80, 120, 70), (60, 100, 120))
PUPIL_BGR = (15, 15, 15)
ROLL_SIGMA_DEG, ROLL_LIMIT_DEG = 12.0, 30.0  # head roll: normal, clipped
VERSION = 2  # bump whenever the same (seed, index) draws a different face; 2: roll sigma 4 -> 12 deg
MANIFEST = "synthetic.json"
SHIFT = 4  # fractional bits of sub-pixel cv2 drawing coordinates


@dataclass(frozen=True)
class FaceGeometry:
    """Where everything goes, image pixels (x, y); angles in degrees, cv2 convention.

    points_xy: (5, 2) int (x, y) landmarks, the ground truth written to the landmark file.
    """

    points_xy: np.ndarray
    scale: float
    roll_deg: float
    face_centre: tuple[float, float]
    face_axes: tuple[float, float]
    smile: float
    mouth_open: float


@dataclass(frozen=True)
class FaceLook:
    """Colours (BGR) and style switches of one face."""

    skin: np.ndarray
    hair: np.ndarray
    iris: tuple[int, int, int]
    lips: np.ndarray
    clothes: tuple[int, int, int]
    long_hair: bool
    fringe_depth: float
    hair_width: float


def rotate_offsets(offsets_xy: np.ndarray, roll_deg: float) -> np.ndarray:
    """Rotate (N, 2) offsets by roll_deg (positive turns clockwise on screen, y down)."""
    radians = math.radians(roll_deg)
    rotation = np.array([[math.cos(radians), -math.sin(radians)],
                         [math.sin(radians), math.cos(radians)]])
    return offsets_xy @ rotation.T


def sample_geometry(rng: np.random.Generator) -> FaceGeometry:
    """Identity, expression and pose of one face; landmarks rounded to integer pixels."""
    scale = float(np.exp(rng.normal(0.0, 0.06)))
    shift = np.clip(rng.normal(0.0, 2.5, size=2), -6.0, 6.0)
    centre = np.array(FACE_CENTRE_XY) + shift
    eye_half = EYE_HALF_SPACING * scale * (1 + rng.normal(0.0, 0.05))
    eye_y = EYE_Y * scale + rng.normal(0.0, 1.2)
    nose_y = eye_y + NOSE_LENGTH * scale * (1 + rng.normal(0.0, 0.07))
    mouth_y = nose_y + MOUTH_GAP * scale * (1 + rng.normal(0.0, 0.08))
    smile = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else 0.0
    mouth_open = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.35 else 0.0
    mouth_half = MOUTH_HALF_WIDTH * scale * (1 + rng.normal(0.0, 0.08)) + 2.5 * smile * scale
    corner_y = mouth_y - 3.5 * smile * scale
    face_axes = (FACE_HALF_AXES[0] * scale * (1 + rng.normal(0.0, 0.06)),
                 FACE_HALF_AXES[1] * scale * (1 + rng.normal(0.0, 0.05)))
    yaw = float(np.clip(rng.normal(0.0, 0.2), -0.45, 0.45))  # sine of the yaw angle
    # In-the-wild head roll: with sigma 12 deg the mean-shape NME of the test crops is about 13 %,
    # near MTFL's 11.8 %; with CelebA's tight alignment (sigma 4) it was 6.3 %, and what was left
    # was sub-pixel shape variation at the 32 px of configs/synthetic.yaml.
    roll = float(np.clip(rng.normal(0.0, ROLL_SIGMA_DEG), -ROLL_LIMIT_DEG, ROLL_LIMIT_DEG))
    offsets = np.array([[-eye_half, eye_y], [eye_half, eye_y], [0.0, nose_y],
                        [-mouth_half, corner_y], [mouth_half, corner_y]])
    depth = np.array([EYE_DEPTH, EYE_DEPTH, NOSE_DEPTH, MOUTH_DEPTH, MOUTH_DEPTH]) * scale
    offsets[:, 0] = offsets[:, 0] * math.sqrt(1 - yaw * yaw) + depth * yaw
    points = np.rint(centre + rotate_offsets(offsets, roll)).astype(np.int64)
    points = np.clip(points, 0, np.array(IMAGE_WH) - 1)
    oval_offset = rotate_offsets(np.array([[OUTLINE_DEPTH * scale * yaw, 3.0 * scale]]), roll)[0]
    return FaceGeometry(points_xy=points, scale=scale, roll_deg=roll,
                        face_centre=tuple(centre + oval_offset),
                        face_axes=(face_axes[0] * (1 - 0.12 * abs(yaw)), face_axes[1]),
                        smile=smile, mouth_open=mouth_open)


def jitter_colour(rng: np.random.Generator, palette: tuple, spread: float) -> np.ndarray:
    """A palette colour (BGR) with independent per-channel jitter, as float."""
    base = np.array(palette[rng.integers(len(palette))], dtype=np.float64)
    return np.clip(base + rng.normal(0.0, spread, size=3), 0, 255)


def sample_look(rng: np.random.Generator) -> FaceLook:
    """Skin, hair, eye, lip and clothing colours and the hair style."""
    skin = jitter_colour(rng, SKIN_TONES_BGR, 12.0)
    return FaceLook(skin=skin, hair=jitter_colour(rng, HAIR_COLOURS_BGR, 10.0),
                    iris=tuple(int(v) for v in jitter_colour(rng, IRIS_COLOURS_BGR, 8.0)),
                    lips=np.clip(skin * np.array([0.75, 0.7, 0.95]) - 15, 0, 255),
                    clothes=tuple(int(v) for v in rng.integers(0, 256, size=3)),
                    long_hair=bool(rng.random() < 0.45),
                    fringe_depth=float(rng.uniform(0.25, 0.5)),
                    hair_width=float(rng.uniform(1.08, 1.3)))


def colour(value) -> tuple[int, ...]:
    """A cv2 colour tuple of ints from any length-3 sequence."""
    return tuple(int(round(float(v))) for v in value)


def fixed(values):
    """Float coordinates -> cv2 fixed-point ints for drawing with shift=SHIFT.

    A flat pair (a point or ellipse axes) becomes a tuple of two ints; an (N, 2) array of
    polygon points becomes an (N, 2) int32 array.
    """
    scaled = np.rint(np.asarray(values, dtype=np.float64) * (1 << SHIFT)).astype(np.int32)
    return (int(scaled[0]), int(scaled[1])) if scaled.ndim == 1 else scaled


def draw_background(rng: np.random.Generator) -> np.ndarray:
    """(218, 178, 3) uint8 BGR: muted smooth colour field, fine grain, a few random shapes."""
    width, height = IMAGE_WH
    base = rng.integers(0, 256, size=3)
    low = rng.integers(0, 256, size=(int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3),
                       dtype=np.uint8)
    field = cv2.resize(low, IMAGE_WH, interpolation=cv2.INTER_CUBIC)
    mix = float(rng.uniform(0.15, 0.7))
    # field * mix + base * (1 - mix), with the constant added per channel as a cv2 scalar.
    image = cv2.add(cv2.addWeighted(field, mix, field, 0.0, 0.0),
                    tuple(float(v) * (1.0 - mix) for v in base) + (0.0,))
    grain_wh = (int(rng.integers(10, 45)), int(rng.integers(10, 55)))
    grain = rng.integers(0, 256, size=(grain_wh[1], grain_wh[0]), dtype=np.uint8)
    grain = cv2.cvtColor(cv2.resize(grain, IMAGE_WH, interpolation=cv2.INTER_LINEAR),
                         cv2.COLOR_GRAY2BGR)
    grain_gain = float(rng.uniform(0.0, 0.3))
    image = cv2.addWeighted(image, 1.0, grain, grain_gain, -127.5 * grain_gain)
    for _ in range(int(rng.integers(1, 7))):
        shape_colour = colour(rng.integers(0, 256, size=3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(8, 60))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(8, 60))), shape_colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, shape_colour, -1, cv2.LINE_AA)
        else:
            cv2.line(image, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))),
                     shape_colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    return image


def face_point(geometry: FaceGeometry, offsets_xy) -> np.ndarray:
    """Face-frame offsets (N, 2), in scale-1 pixels, -> image (x, y), rolled with the face."""
    offsets = np.asarray(offsets_xy, dtype=np.float64).reshape(-1, 2) * geometry.scale
    return np.asarray(geometry.face_centre) + rotate_offsets(offsets, geometry.roll_deg)


def draw_head(image: np.ndarray, geometry: FaceGeometry, look: FaceLook) -> None:
    """Shoulders, neck, hair mass, ears, face oval and fringe, in place."""
    scale, roll = geometry.scale, geometry.roll_deg
    axes_w, axes_h = geometry.face_axes
    centre = geometry.face_centre
    cv2.ellipse(image, fixed(face_point(geometry, [0, 130])[0]),
                fixed([80 * scale, 55 * scale]), 0, 0, 360, look.clothes, -1, cv2.LINE_AA, SHIFT)
    neck = face_point(geometry, [[-22, 30], [22, 30], [26, 110], [-26, 110]])
    cv2.fillPoly(image, [fixed(neck)], colour(look.skin * 0.8), cv2.LINE_AA, SHIFT)
    hair_centre = face_point(geometry, [0, -12])[0]
    hair_axes = [axes_w * look.hair_width, axes_h * 1.05]
    cv2.ellipse(image, fixed(hair_centre), fixed(hair_axes), roll, 0, 360, colour(look.hair), -1,
                cv2.LINE_AA, SHIFT)
    if look.long_hair:
        hair_down = face_point(geometry, [[-look.hair_width * 46, -10], [look.hair_width * 46, -10],
                                          [look.hair_width * 52, 95], [-look.hair_width * 52, 95]])
        cv2.fillPoly(image, [fixed(hair_down)], colour(look.hair), cv2.LINE_AA, SHIFT)
    for side in (-1, 1):
        ear = face_point(geometry, [side * 44, 2])[0]
        cv2.ellipse(image, fixed(ear), fixed([7 * scale, 13 * scale]), roll, 0, 360,
                    colour(look.skin * 0.9), -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(image, fixed(centre), fixed([axes_w, axes_h]), roll, 0, 360, colour(look.skin),
                -1, cv2.LINE_AA, SHIFT)
    fringe_centre = face_point(geometry, [0, -axes_h / scale * 0.95])[0]
    cv2.ellipse(image, fixed(fringe_centre), fixed([axes_w * 1.02, axes_h * look.fringe_depth]),
                roll, 0, 360, colour(look.hair), -1, cv2.LINE_AA, SHIFT)


def mouth_curves(left: np.ndarray, right: np.ndarray, bulge: float, smile: float, count: int = 9
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(centre line, unit normal pointing down the face) of a mouth between two corners.

    centre line: (count, 2) points from `left` to `right` exactly, sagging by `smile` in the
    middle. Lips are offsets along the normal weighted by `bulge` * sin(pi * t).
    """
    t = np.linspace(0.0, 1.0, count)[:, None]
    along = right - left
    normal = np.array([-along[1], along[0]]) / max(np.linalg.norm(along), 1e-6)
    line = left + t * along + normal * smile * np.sin(np.pi * t)
    return line, normal * np.sin(np.pi * t) ** bulge


def draw_features(image: np.ndarray, geometry: FaceGeometry, look: FaceLook) -> None:
    """Eyebrows, eyes, nose and mouth around the landmark points, in place (markers separate)."""
    scale, roll = geometry.scale, geometry.roll_deg
    left_eye, right_eye, nose, left_mouth, right_mouth = geometry.points_xy.astype(np.float64)
    up = rotate_offsets(np.array([[0.0, -1.0]]), roll)[0]
    for eye in (left_eye, right_eye):
        brow = eye + up * 9 * scale
        cv2.ellipse(image, fixed(brow), fixed([9 * scale, 3 * scale]), roll, 200, 340,
                    colour(look.hair * 0.7), max(2, int(round(2.5 * scale))), cv2.LINE_AA, SHIFT)
        cv2.ellipse(image, fixed(eye), fixed([7.5 * scale, 3.8 * scale]), roll, 0, 360,
                    (235, 240, 240), -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(image, fixed(eye), fixed([7.5 * scale, 3.8 * scale]), roll, 180, 360,
                    colour(look.skin * 0.45), 1, cv2.LINE_AA, SHIFT)
        cv2.circle(image, colour(eye), max(3, int(round(3.4 * scale))), look.iris, -1, cv2.LINE_AA)
    bridge_top = (left_eye + right_eye) / 2 - up * 4 * scale
    side = rotate_offsets(np.array([[1.0, 0.0]]), roll)[0]
    for sign in (-1, 1):
        cv2.line(image, fixed(bridge_top + sign * side * 3 * scale),
                 fixed(nose + up * 4 * scale + sign * side * 4.5 * scale),
                 colour(look.skin * 0.82), 1, cv2.LINE_AA, SHIFT)
        nostril = nose - up * 2.5 * scale + sign * side * 4 * scale
        cv2.ellipse(image, fixed(nostril), fixed([2.2 * scale, 1.3 * scale]), roll, 0, 360,
                    colour(look.skin * 0.45), -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(image, fixed(nose), fixed([4.5 * scale, 3.5 * scale]), roll, 0, 360,
                colour(look.skin * 0.93), -1, cv2.LINE_AA, SHIFT)
    line, normal = mouth_curves(left_mouth, right_mouth, 0.7, 2.5 * geometry.smile * scale)
    opening = 9.0 * geometry.mouth_open * scale
    upper = line - normal * 3.0 * scale
    lower = line + normal * (3.5 * scale + opening)
    cv2.fillPoly(image, [fixed(np.concatenate([upper, lower[::-1]]))], colour(look.lips),
                 cv2.LINE_AA, SHIFT)
    if opening > 0:
        inner_top = line - normal * 0.8 * scale
        inner_bottom = line + normal * opening
        cv2.fillPoly(image, [fixed(np.concatenate([inner_top, inner_bottom[::-1]]))],
                     (40, 30, 60), cv2.LINE_AA, SHIFT)
        teeth_bottom = line + normal * min(opening, 3.0 * scale)
        cv2.fillPoly(image, [fixed(np.concatenate([inner_top, teeth_bottom[::-1]]))],
                     (215, 225, 230), cv2.LINE_AA, SHIFT)
    else:
        cv2.polylines(image, [fixed(line)], False, colour(look.lips * 0.5), 1, cv2.LINE_AA, SHIFT)


def draw_markers(image: np.ndarray, geometry: FaceGeometry, colours_bgr) -> None:
    """The five landmark markers, each centred exactly on its integer point, in place.

    Eyes: pupil disc, radius max(2, round(1.6 * scale)). Nose: tip highlight disc, radius 1.
    Mouth corners: corner dot, radius 1. Non-antialiased discs, symmetric about the point.
    """
    pupil_radius = max(2, int(round(1.6 * geometry.scale)))
    radii = (pupil_radius, pupil_radius, 1, 1, 1)
    for point, radius, marker_colour in zip(geometry.points_xy, radii, colours_bgr):
        cv2.circle(image, (int(point[0]), int(point[1])), radius, marker_colour, -1, cv2.LINE_8)


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, optional blur and noise on a uint8 BGR image."""
    slope = rng.uniform(-0.3, 0.3, size=2)
    corners = 1 + np.array([[-slope[0] - slope[1], slope[0] - slope[1]],
                            [-slope[0] + slope[1], slope[0] + slope[1]]], dtype=np.float32)
    gain = cv2.resize(corners, IMAGE_WH, interpolation=cv2.INTER_LINEAR)  # (H, W) bilinear ramp
    image = cv2.multiply(image, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.3, 0.9)))
    noise_gain = float(rng.uniform(0.0, 6.0)) / 73.6  # 73.6 = std of uniform bytes
    noise = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape)
    return cv2.addWeighted(image, 1.0, noise, noise_gain, -127.5 * noise_gain)


def render_face(rng: np.random.Generator, *, features_only: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """One face: ((218, 178, 3) uint8 BGR image, (5, 2) int64 (x, y) landmark pixels).

    features_only: draw only the landmark markers in `MARKER_COLOURS` on black (no head, no
    lighting or noise), the same markers at the same places as a normal render of this rng state.
    """
    geometry = sample_geometry(rng)
    look = sample_look(rng)
    if features_only:
        image = np.zeros((IMAGE_WH[1], IMAGE_WH[0], 3), dtype=np.uint8)
        draw_markers(image, geometry, MARKER_COLOURS)
        return image, geometry.points_xy
    image = draw_background(rng)
    draw_head(image, geometry, look)
    draw_features(image, geometry, look)
    highlight = colour(np.minimum(look.skin * 1.15 + 25, 255))
    corner = colour(look.lips * 0.35)
    draw_markers(image, geometry, (PUPIL_BGR, PUPIL_BGR, highlight, corner, corner))
    return finish(image, rng), geometry.points_xy


def landmark_rows(names: list[str], points_xy: list[np.ndarray]) -> str:
    """The CelebA landmark file text for integer (5, 2) points."""
    lines = [str(len(names)), LANDMARK_HEADER]
    for name, points in zip(names, points_xy):
        lines.append(name + " " + " ".join(f"{int(v):4d}" for v in points.reshape(-1)))
    return "\n".join(lines) + "\n"


def generate(out: str | Path, num_images: int, seed: int = 0, *, progress: bool = False) -> Path:
    """Write `num_images` synthetic faces in the CelebA + MAFL layout under `out`; return `out`.

    The last max(1, round(TEST_FRACTION * n)) names form MAFL/testing.txt, the rest
    MAFL/training.txt. Existing files of the same names are overwritten.
    """
    if num_images < 2:
        raise UserError(f"--num-images={num_images}: expected at least 2 (one train, one test)")
    if seed < 0:
        raise UserError(f"--seed={seed}: expected a non-negative integer")
    out = Path(out)
    image_dir = out / IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    names, points = [], []
    for index in tqdm(range(num_images), desc="synthetic faces", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, index])
        image, points_xy = render_face(rng)
        quality = int(rng.integers(70, 96))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        name = f"{index + 1:06d}.jpg"
        (image_dir / name).write_bytes(encoded.tobytes())
        names.append(name)
        points.append(points_xy)
    (out / LANDMARK_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / LANDMARK_FILE).write_text(landmark_rows(names, points))
    num_test = max(1, round(TEST_FRACTION * num_images))
    (out / MAFL_TRAIN_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / MAFL_TRAIN_FILE).write_text("\n".join(names[:-num_test]))
    (out / MAFL_TEST_FILE).write_text("\n".join(names[-num_test:]))
    (out / MANIFEST).write_text(json.dumps(manifest(num_images, seed)) + "\n")  # last: marks a finished set
    return out


def manifest(num_images: int, seed: int) -> dict:
    """What `synthetic.json` records: the recipe that reproduces the set byte for byte."""
    return {"version": VERSION, "num_images": num_images, "seed": seed}


def is_synthetic_root(root: str | Path) -> bool:
    """Whether `root` holds a set written by this module: its MANIFEST marks the root (extract_data.py records
    it, so that a report calls the detections "synthetic", not by the layout's name, MAFL)."""
    return (Path(root) / MANIFEST).is_file()


def is_current(out: str | Path, num_images: int, seed: int) -> bool:
    """Whether `out` holds a finished set of this generator version, size and seed."""
    try:
        return json.loads((Path(out) / MANIFEST).read_text()) == manifest(num_images, seed)
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Command line: write a synthetic face data set; prints one line per user mistake."""
    parser = argparse.ArgumentParser(
        prog="python -m datasets.synthetic",
        description="Write procedurally drawn faces in the CelebA + MAFL layout (no download).")
    parser.add_argument("--out", required=True, type=Path,
                        help="output root (gets Img/, Anno/, MAFL/); e.g. data/synthetic")
    parser.add_argument("--num-images", type=int, default=2000,
                        help="number of faces (default 2000; about 300+ per second on one core). "
                             "Use 200 for a smoke test, 20000+ for a real training run")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (default 0); the same seed gives the same bytes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--reuse", action="store_true",
                        help="do nothing if --out already holds a finished set of the same generator version, "
                             "size and seed (its synthetic.json says so); otherwise write it")
    args = parser.parse_args(argv)
    if args.reuse and is_current(args.out, args.num_images, args.seed):
        print(f"reusing {args.num_images} faces in {args.out} (seed {args.seed}, generator version {VERSION})")
        return 0
    try:
        out = generate(args.out, args.num_images, args.seed, progress=not args.quiet)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_images} faces to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
