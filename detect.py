"""Facial landmarks on your own photos: a picture and rows of landmarks.csv per face.

    python detect.py photos/                                   # the shipped model, faces found in each photo
    python detect.py --checkpoint runs/mtfl_k10/last.pt face.jpg --box 120,80,360,320
    python detect.py group.jpg --boxes faces.csv               # your face boxes, one line per face

Without --checkpoint the shipped model checkpoints/mtfl_k10.pt is used:
  {shipped}.
Folders are searched recursively for .jpg/.jpeg/.png/.bmp, in sorted order.

What the detector sees (--crop; it works best on a face framed as in training):
- `faces` (the default with a checkpoint that carries a face-crop map, as the shipped one does): faces
  are found with OpenCV's Haar cascade; each face box goes through the checkpoint's map from a face box
  to its training crop (learnt by export_model.py), so the face fills the crop as in training. A
  checkpoint with looks (the shipped one) also shows the detector each face in four shifted crops and
  takes the named points from the points of all five (the raw K points are those of the main crop).
- `box`: face boxes you give: `--box x0,y0,x1,y1` (image pixels, x1 and y1 exclusive) for every image,
  or `--boxes FILE.csv` with the header `image,x0,y0,x1,y1` and one line per face (several lines for
  several faces of an image; image paths as given on the command line or relative to the CSV's folder).
  With a face-crop map a given box is a face box and goes through the map; without one the box itself
  is the crop.
- `centre` (the default otherwise): the centred square of side min(width, height).
- `full`: the whole image squeezed to a square (images already cropped to the face).

Outputs in --out: one `landmarks.csv` with the columns
  image, face, x0, y0, x1, y1, landmark, x, y
`face` is the face's index in its image (0 = the largest box), x0..y1 its box in image pixels (the face
box found or given; for centre and full the region the detector saw); then one row per point: the K
detected points (`landmark` 0..K-1) and, when the checkpoint carries a named-point regressor, the five
named points (`landmark` = left_eye, right_eye, nose, left_mouth, right_mouth). (x, y) are pixels of the
ORIGINAL stored image (EXIF orientation ignored), pixel-centre convention (the centre of the top-left
pixel is (0, 0)), 3 decimals: x_orig = x0 + (x_crop + 0.5) * w / S - 0.5 for a crop of side S showing a
region of width w from x0, and the same for y. `<stem>_landmarks.png` draws each face's box, its K points
(discs, landmark k always in the same colour) and its named points (crosses); images sharing a stem get
their path (`a__1.jpg_landmarks.png` for a/1.jpg). An image without a face gets no rows and a note.
Photos with a side of 2,000 px or more are decoded reduced (1/2, 1/4 or 1/8, keeping at least 1,000 px)
and drawn at that size; the CSV stays in original pixels.

A new or empty --out is written in place; one that holds files (an earlier run) is kept, and the results
go to the next free <out>-2, <out>-3, ... (printed). Rows follow their picture and are flushed batch by
batch, so a crash or a full disk keeps the rows of the images done; --skip-bad-images skips (and counts)
images that do not decode. The model runs in eval mode: a face's points do not depend on the others.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.faces import FaceCropping, FaceInput, Photo, face_input, photo_face_inputs, quiet_header_reads, read_photo
from datasets.records import SkippedDataWarning, image_size_wh, read_text_lines
from model import load_model
from utils.checkpoint import checkpoint_identity, find_checkpoint, read_checkpoint
from utils.dataset_registry import IMAGE_SUFFIXES
from utils.device import resolve_device
from utils.errors import UserError, exit_code_of
from utils.extraction import (SHIPPED_CHECKPOINT, FaceLandmarks, locate_faces, ordered_map,
                              read_named_points)
from utils.files import check_writable_folder, os_reason
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import RidgeModel
from utils.visualize import distinct_colors, draw_points, save_png

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT  # checkpoints/mtfl_k10.pt of this repository
CROP_MODES = ("faces", "centre", "full", "box")
CSV_FIELDS = ("image", "face", "x0", "y0", "x1", "y1", "landmark", "x", "y")
BOXES_HEADER = ("image", "x0", "y0", "x1", "y1")
BOX_RGB, NAMED_RGB = (0, 255, 0), (255, 255, 255)
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) integer pixels, x1 and y1 exclusive


# ---------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------


def parse_box(text: str, where: str = "--box") -> Box:
    """'x0,y0,x1,y1' -> (x0, y0, x1, y1): integers, x0, y0 >= 0, x1 > x0 and y1 > y0."""
    parts = [p.strip() for p in text.split(",")]
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"{where} {text!r}: expected four integers x0,y0,x1,y1 in image pixels "
                        "(e.g. 120,80,360,320)") from None
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise UserError(f"{where} {text!r}: expected 0 <= x0 < x1 and 0 <= y0 < y1 (x1, y1 exclusive)")
    return x0, y0, x1, y1


def crop_box(image_wh: tuple[int, int], mode: str, box: Box | None = None) -> Box:
    """The region of an image of size (width, height) that the detector sees, for a crop mode.

    centre: the centred square of side min(width, height), offset (width - side) // 2 (a 200 x 100
    image gives (50, 0, 150, 100)); full: (0, 0, width, height); box: `box`, which must lie inside.
    """
    width, height = image_wh
    if mode == "centre":
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return x0, y0, x0 + side, y0 + side
    if mode == "full":
        return 0, 0, width, height
    if mode != "box" or box is None:
        raise ValueError(f"crop mode {mode!r} (box {box}); expected centre, full, or box with a box")
    if box[2] > width or box[3] > height:
        raise UserError(f"--box {','.join(map(str, box))} reaches outside the {width}x{height} image; "
                        "expected x1 <= width and y1 <= height")
    return box


@dataclass(frozen=True)
class GivenBox:
    """A face box given on the command line or in a --boxes file; `where` names it in messages."""

    box: Box
    where: str


def read_boxes_file(path: Path, images: Sequence[Path]) -> dict[Path, list[GivenBox]]:
    """{image: its boxes} from a CSV with the header `image,x0,y0,x1,y1` and one line per face.

    An image is named as given on the command line or relative to the CSV's folder. A malformed line, an
    image not among `images` or a box reaching outside its image is a one-line UserError naming file:line.
    """
    lines = read_text_lines(path, "a CSV of face boxes with the header image,x0,y0,x1,y1")
    rows = list(csv.reader(lines))
    if not rows or tuple(cell.strip() for cell in rows[0]) != BOXES_HEADER:
        raise UserError(f"{path}:1: header {','.join(rows[0]) if rows else '(empty file)'}; expected "
                        f"{','.join(BOXES_HEADER)}, then one line per face")
    by_file = {p.resolve(): p for p in images}
    boxes: dict[Path, list[GivenBox]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        if len(row) != len(BOXES_HEADER):
            raise UserError(f"{where}: {len(row)} fields; expected 5: image,x0,y0,x1,y1")
        name = row[0].strip()
        image = next((by_file[c.resolve()] for c in (Path(name), path.parent / name) if c.resolve() in by_file), None)
        if image is None:
            raise UserError(f"{where}: {name} is not among the images given (paths are taken as given on the "
                            f"command line or relative to {path.parent})")
        box = parse_box(",".join(row[1:]), f"{where}: box")
        check_inside(box, image_size_wh(image), f"{where}: box", image)
        boxes.setdefault(image, []).append(GivenBox(box, where))
    if not boxes:
        raise UserError(f"{path}: no face boxes; expected one line image,x0,y0,x1,y1 per face after the header")
    return boxes


def check_inside(box: Box, size_wh: tuple[int, int] | None, where: str, image: Path) -> None:
    """A one-line UserError if `box` reaches outside an image of `size_wh` (None: not known yet, no check)."""
    if size_wh is not None and (box[2] > size_wh[0] or box[3] > size_wh[1]):
        raise UserError(f"{where} {','.join(map(str, box))} reaches outside the {size_wh[0]}x{size_wh[1]} image "
                        f"{image}; expected x1 <= width and y1 <= height")


# ---------------------------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------------------------


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders, in the order given; folders recursively, sorted.

    Folders contribute files whose suffix is in IMAGE_SUFFIXES (any case); files given directly
    are taken as they are. A file reached twice is kept once.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_file():
            found.append(item)
        elif item.is_dir():
            images = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise UserError(f"{item}: no images in this folder; expected {'/'.join(IMAGE_SUFFIXES)} files")
            found.extend(images)
        else:
            raise UserError(f"{item}: no such image file or folder")
    seen: set[Path] = set()
    unique = []
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per image: its stem, or, for stems shared by several images, its path
    relative to the common folder of those images with '/' written '__' (suffix kept)."""
    counts = Counter(p.stem for p in paths)
    shared = [p.resolve() for p in paths if counts[p.stem] > 1]
    root = Path(os.path.commonpath([str(p.parent) for p in shared])) if shared else None
    return [p.stem if counts[p.stem] == 1 else "__".join(p.resolve().relative_to(root).parts) for p in paths]


def free_out_folder(out: Path) -> Path:
    """`out` if it is new or an empty folder, else the first of <out>-2, <out>-3, ... that is (a file in the
    way is left for `check_writable_folder` to name)."""
    def taken(folder: Path) -> bool:
        return folder.is_dir() and any(folder.iterdir())

    if not taken(out):
        return out
    out = out if out.name else out.resolve()  # '.' or 'photos/..': name the folder itself
    if not out.name:
        raise UserError(f"--out {out}: holds files already and has no name to number; choose a folder below it")
    number = 2
    while taken(out.with_name(f"{out.name}-{number}")):
        number += 1
    return out.with_name(f"{out.name}-{number}")


def plural(count: int, word: str) -> str:
    """'1 face', '2 faces'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def marker_radius(image_wh: tuple[int, int]) -> int:
    """Disc radius in pixels: 2 for images up to 256 pixels, growing with the larger side."""
    return max(2, round(max(image_wh) / 128))


def csv_rows(image: str, face: int, found: FaceLandmarks) -> list[tuple]:
    """landmarks.csv rows of one face: its K points, then its named points (if any), 3 decimals."""
    labels: list = list(range(len(found.points_xy)))
    points = [found.points_xy]
    if found.named_xy is not None:
        labels += list(LANDMARK_NAMES)
        points.append(found.named_xy)
    return [(image, face, *found.face_box, label, f"{x:.3f}", f"{y:.3f}")
            for label, (x, y) in zip(labels, np.concatenate(points))]


def draw_faces(photo: Photo, faces: Sequence[FaceLandmarks], colors: list) -> np.ndarray:
    """The photo's pixels with each face's box, its K points (discs) and named points (crosses) drawn."""
    image = photo.pixels.copy()
    radius = marker_radius((image.shape[1], image.shape[0]))
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in photo.pixel_edges(face.face_box))
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), BOX_RGB, max(1, radius // 2))
        image = draw_points(image, photo.to_pixels_xy(face.points_xy), colors, radius=radius)
        if face.named_xy is not None:
            named = photo.to_pixels_xy(face.named_xy)
            image = draw_points(image, named, [(0, 0, 0)] * len(named), radius=radius + 2, marker="cross")
            image = draw_points(image, named, [NAMED_RGB] * len(named), radius=radius + 1, marker="cross")
    return image


# ---------------------------------------------------------------------------------------------
# The model and what it expects
# ---------------------------------------------------------------------------------------------


def crop_settings(config: dict) -> str:
    """'32x32 crops with a 30 % margin' from a checkpoint's config dict."""
    data = config["data"]
    return (f"{data['image_size']}x{data['image_size']} crops with a {data['tight']} % margin (the box of the "
            f"five points widened by {data['tight']} % of their extent on each side)")


def shipped_model_note() -> str:
    """What the help says of the shipped model: its crops, read from the file when it is there."""
    if not DEFAULT_CHECKPOINT.is_file():
        return "it is not in this copy of the repository yet: make it with bash scripts/ship_model.sh MTFL_FOLDER"
    try:
        config = read_checkpoint(DEFAULT_CHECKPOINT)["config"]
    except (UserError, KeyError, TypeError):
        return "it does not read as a checkpoint (a partial copy?)"
    return f"the shipped model sees {crop_settings(config)}; K={config['model']['num_points']}"


@dataclass
class Detector:
    """A loaded checkpoint with what detect.py needs of it."""

    model: torch.nn.Module
    file: Path
    ckpt: dict
    size: int
    num_points: int
    cropping: FaceCropping | None
    regressor: RidgeModel | None


def load_detector(checkpoint: str | None, device: torch.device) -> Detector:
    """The model of --checkpoint (default: the shipped one), its face-crop map and named-point regressor."""
    if checkpoint is None and not DEFAULT_CHECKPOINT.is_file():
        raise UserError(f"{DEFAULT_CHECKPOINT}: the shipped model is not in this copy of the repository; make it "
                        "with bash scripts/ship_model.sh MTFL_FOLDER, or pass --checkpoint RUN/last.pt")
    file = find_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    model, model_cfg, ckpt = load_model(file, device)
    cropping = (FaceCropping.from_dict(ckpt["face_crop"], str(file), model_cfg.num_points) if "face_crop" in ckpt
                else None)
    regressor = read_named_points(ckpt, model_cfg.num_points, str(file))
    return Detector(model, file, ckpt, int(ckpt["config"]["data"]["image_size"]), model_cfg.num_points, cropping,
                    regressor)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    """What every photo goes through: the crop mode and its boxes, the detector's crop side and map."""

    mode: str
    size: int
    cropping: FaceCropping | None
    box: Box | None = None
    boxes: dict[Path, list[GivenBox]] = field(default_factory=dict)
    skip_bad_images: bool = False


@dataclass
class Prepared:
    """One photo read and its faces cut out (photo None: skipped as bad)."""

    path: Path
    photo: Photo | None
    faces: list[FaceInput]
    searched: bool = False  # whether the faces were searched for (not given)


def prepare_photo(path: Path, job: Job) -> Prepared:
    """Read a photo and make its faces' detector inputs (in a worker thread)."""
    try:
        photo = read_photo(path)
    except UserError:
        if not job.skip_bad_images:
            raise
        return Prepared(path, None, [])
    if job.mode == "faces":
        return Prepared(path, photo, photo_face_inputs(photo, job.size, job.cropping), searched=True)
    if job.mode != "box":
        return Prepared(path, photo, [face_input(photo, crop_box(photo.size_wh, job.mode), job.size)])
    if job.box is not None:
        try:
            given = [crop_box(photo.size_wh, "box", job.box)]
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    else:
        given = [g.box for g in job.boxes.get(path, [])]
        for g in job.boxes.get(path, []):
            check_inside(g.box, photo.size_wh, f"{g.where}: box", path)
    ordered = sorted(given, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))  # largest first, stable
    return Prepared(path, photo, [face_input(photo, b, job.size, job.cropping) for b in ordered])


@dataclass
class Tally:
    """Counts of a run, for its last line."""

    photos: int = 0
    faces: int = 0
    rows: int = 0
    faceless: int = 0
    skipped: list[Path] = field(default_factory=list)


def write_batch(batch: list[Prepared], detector: Detector, device: torch.device, out: Path, stems: dict,
                rows: csv.writer, tally: Tally, bar: tqdm) -> None:
    """Detect the faces of a batch of photos; write each photo's picture, then its rows."""
    faces = [face for prepared in batch for face in prepared.faces]
    looks_regressor = detector.cropping.looks_regressor if detector.cropping else None
    found = iter(locate_faces(detector.model, faces, detector.size, device, detector.regressor,
                              looks_regressor=looks_regressor))
    colors = distinct_colors(detector.num_points)
    for prepared in batch:
        if prepared.photo is None:
            tally.skipped.append(prepared.path)
            continue
        mine = [next(found) for _ in prepared.faces]
        save_png(out / f"{stems[prepared.path]}_landmarks.png", draw_faces(prepared.photo, mine, colors))
        for index, face in enumerate(mine):  # after its picture: the CSV holds rows of finished images only
            face_rows = csv_rows(str(prepared.path), index, face)
            rows.writerows(face_rows)
            tally.rows += len(face_rows)
        tally.photos, tally.faces = tally.photos + 1, tally.faces + len(mine)
        if not mine:
            tally.faceless += 1
            bar.write(f"note: {prepared.path}: {'no face found' if prepared.searched else 'no face box given'}; "
                      "no rows for it", file=sys.stderr)


def write_landmarks(detector: Detector, job: Job, paths: Sequence[Path], out: Path, args: argparse.Namespace,
                    device: torch.device) -> Tally:
    """Read and cut photos in worker threads while the detector runs on batches of their faces; write
    landmarks.csv (flushed after each batch) and a picture per photo."""
    stems = dict(zip(paths, output_stems(paths)))
    out.mkdir(parents=True, exist_ok=True)
    tally, batch = Tally(), []
    bar = tqdm(total=len(paths), desc="detect", unit="image", disable=args.quiet or len(paths) < 2, leave=False)
    with open(out / "landmarks.csv", "w", newline="", encoding="utf-8") as csv_file:
        rows = csv.writer(csv_file, lineterminator="\n")
        rows.writerow(CSV_FIELDS)
        csv_file.flush()
        for prepared in ordered_map(partial(prepare_photo, job=job), paths, args.workers):
            batch.append(prepared)
            if sum(len(p.faces) for p in batch) >= args.batch_size:
                write_batch(batch, detector, device, out, stems, rows, tally, bar)
                csv_file.flush()
                bar.update(len(batch))
                batch = []
        write_batch(batch, detector, device, out, stems, rows, tally, bar)
    bar.close()
    return tally


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    description = __doc__.replace("{shipped}", shipped_model_note())
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and/or folders (searched recursively for jpg/jpeg/png/bmp)")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint file or a run folder (its last.pt; pass best.pt explicitly to use the best one); "
                        f"default: the shipped model {DEFAULT_CHECKPOINT.relative_to(DEFAULT_CHECKPOINT.parents[1])}")
    p.add_argument("--out", type=Path, default=Path("results/detect"),
                   help="output folder for <stem>_landmarks.png and landmarks.csv (default: %(default)s); one that "
                        "holds files already is kept and the results go to the next free <out>-2, <out>-3, ...")
    p.add_argument("--crop", choices=CROP_MODES, default=None,
                   help="what the detector sees: faces = faces found in each photo (default with a checkpoint "
                        "that carries a face-crop map), centre = centred square (default otherwise), full = whole "
                        "image squeezed to a square, box = the --box or --boxes face boxes (default when given)")
    p.add_argument("--box", default=None, metavar="x0,y0,x1,y1",
                   help="a face box in image pixels (x1, y1 exclusive), the same for every image")
    p.add_argument("--boxes", type=Path, default=None, metavar="FILE.csv",
                   help="face boxes per image: a CSV with the header image,x0,y0,x1,y1 and one line per face")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="faces per forward pass (default: %(default)s); lower it if memory runs out. "
                        "Results do not depend on it (eval-mode BatchNorm)")
    p.add_argument("--workers", type=int, default=2,
                   help="threads that read photos and find faces while the detector runs (default: %(default)s; "
                        "0: all in one thread). Results do not depend on it")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip images that do not decode or are truncated (counted and reported) instead of stopping; "
                        "without it the CSV keeps the rows of the images done before the bad one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def resolve_crop(crop: str | None, box_text: str | None, boxes_file: Path | None, can_find_faces: bool) -> str:
    """The crop mode from --crop, --box and --boxes; given boxes mean --crop box."""
    if box_text is not None and boxes_file is not None:
        raise UserError("give --box (one box for every image) or --boxes FILE.csv (boxes per image), not both")
    if box_text is None and boxes_file is None:
        if crop == "box":
            raise UserError("--crop box needs --box x0,y0,x1,y1 (e.g. --box 120,80,360,320) or --boxes FILE.csv")
        return crop or ("faces" if can_find_faces else "centre")
    if crop not in (None, "box"):
        option = "--box" if box_text is not None else "--boxes"
        raise UserError(f"{option} is only used with --crop box, not --crop {crop}; drop one of them")
    return "box"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def describe(detector: Detector, mode: str, device: torch.device, images: int) -> str:
    """The first line of a run: the checkpoint, what it sees, the crop and the named points."""
    crop = {"faces": "faces found (Haar cascade) -> training crops", "centre": "centred square",
            "full": "whole image", "box": "given face boxes" + (" -> training crops" if detector.cropping else "")}
    named = (f"named points fitted on {detector.ckpt['named_points'].get('fitted_on', '?')}" if detector.regressor
             else "no named points (the checkpoint has no regressor)")
    return (f"checkpoint {checkpoint_identity(detector.file)} (step {detector.ckpt['step']}, K={detector.num_points}) "
            f"on {device}: {crop_settings(detector.ckpt['config'])}; {plural(images, 'image')}, crop {crop[mode]}; "
            f"{named}")


def run(args: argparse.Namespace) -> Path:
    """Detect, draw and write; returns the CSV path. User mistakes raise UserError."""
    box = parse_box(args.box) if args.box is not None else None
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value < minimum:
            raise UserError(f"{flag} {value}: expected >= {minimum}")
    resolve_crop(args.crop, args.box, args.boxes, True)  # option conflicts, before any file is read
    paths = find_images(args.inputs)
    boxes = read_boxes_file(args.boxes, paths) if args.boxes is not None else {}
    out = free_out_folder(args.out)
    check_writable_folder(out, "the pictures and landmarks.csv (--out)")  # before the model is loaded
    if out != args.out:
        print(f"{args.out} holds an earlier run's files: writing to {out}")
    device = resolve_device(args.device)
    detector = load_detector(args.checkpoint, device)
    mode = resolve_crop(args.crop, args.box, args.boxes, detector.cropping is not None)
    if mode == "faces" and detector.cropping is None:
        raise UserError(f"{detector.file}: no face-crop map (from a face box to the crop it was trained on) to find "
                        "faces with; export one with export_model.py, or use --crop centre/full or --box")
    print(describe(detector, mode, device, len(paths)))
    cv2.setNumThreads(1)  # the worker threads are the parallelism
    quiet_header_reads()
    job = Job(mode, detector.size, detector.cropping, box, boxes, args.skip_bad_images)
    start, threads = time.perf_counter(), torch.get_num_threads()
    if device.type == "cpu":  # the cores the workers leave; torch's spinning threads would slow them down
        torch.set_num_threads(max(1, usable_cores() - args.workers))
    try:
        tally = write_landmarks(detector, job, paths, out, args, device)
    except OSError as exc:  # a full disk: landmarks.csv keeps the rows flushed before
        raise UserError(f"{exc.filename or out}: cannot write ({os_reason(exc)}); {out / 'landmarks.csv'} keeps the "
                        "rows of the images done before; make room (or choose --out), then run again") from None
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    if tally.skipped:
        warnings.warn(f"skipped {len(tally.skipped)} of {len(paths)} images that do not decode "
                      f"(first: {tally.skipped[0]})", SkippedDataWarning, stacklevel=2)
    print(f"wrote {out / 'landmarks.csv'} ({tally.rows} rows: {plural(tally.faces, 'face')} in "
          f"{plural(tally.photos, 'image')}{f', {tally.faceless} without a face' if tally.faceless else ''}) and "
          f"{plural(tally.photos, 'picture')} to {out}"
          + (f"; skipped {len(tally.skipped)} bad images" if tally.skipped else "")
          + f"; {seconds:.1f} s, {tally.photos / max(seconds, 1e-9):.1f} photos/s")
    return out / "landmarks.csv"


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
