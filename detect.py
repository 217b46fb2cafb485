"""Run a trained landmark detector on your own images: a picture and a CSV of points per image.

    python detect.py --checkpoint runs/celeba_k10/best.pt photos/ --out results/detect
    python detect.py --checkpoint runs/celeba_k10 face.jpg --crop box --box 120,80,360,320

For every image (folders are searched recursively for .jpg/.jpeg/.png/.bmp, in sorted order) it
writes `<out>/<stem>_landmarks.png`: the image at its original resolution with the K detected
landmarks drawn, landmark k always in the same colour (`utils.visualize.distinct_colors(K)[k]`).
Images sharing a stem get their path instead (`a__1.jpg_landmarks.png` for a/1.jpg). One CSV,
`<out>/landmarks.csv`, holds `image,landmark,x,y`: K rows per image, (x, y) in pixels of the
ORIGINAL image with the pixel-centre convention (the centre of the top-left pixel is (0, 0)). It is
written batch by batch, so the rows of finished images survive a crash or a bad image; with
`--skip-bad-images` images that do not decode (or are truncated) are skipped and counted. An `--out`
that cannot take files is refused before the model is loaded; a disk that fills up ends the run with one
line, the CSV keeping the rows written before.

The detector sees a square crop resized to the size it was trained at (S, from the checkpoint):
- `centre` (default): the centred square of side min(width, height); the aspect is kept.
- `full`: the whole image squeezed to a square; the aspect is not kept. For images that are
  already cropped to the face.
- `box`: `--box x0,y0,x1,y1` in image pixels (x1, y1 exclusive), the same box for every image; a
  square box keeps the aspect.
The detector was trained on faces cropped around their landmarks (about 70 % margin): it works
best when the face fills the crop the same way, e.g. with `--crop box` around the face.

Points map back with the exact inverse of the crop and resize (both align pixel centres):
x_orig = x0 + (x_crop + 0.5) * w / S - 0.5, and the same for y with y0 and the box height h.
Images are read as stored: EXIF orientation is ignored, so the points refer to the stored pixels.
The model runs in eval mode (BatchNorm running statistics): a face's points do not depend on the
other images of its batch.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.records import SkippedDataWarning, read_image_rgb
from datasets.transforms import image_to_chw_float
from model import LandmarkAutoencoder, load_model
from utils.checkpoint import checkpoint_identity, find_checkpoint
from utils.dataset_registry import IMAGE_SUFFIXES
from utils.device import resolve_device
from utils.errors import UserError, exit_code_of
from utils.files import check_writable_folder, os_reason
from utils.geometry import heatmap_to_image_xy
from utils.visualize import distinct_colors, draw_points, save_png

CROP_MODES = ("centre", "full", "box")
CSV_FIELDS = ("image", "landmark", "x", "y")
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) integer pixels, x1 and y1 exclusive


# ---------------------------------------------------------------------------------------------
# Crop geometry (pure)
# ---------------------------------------------------------------------------------------------


def parse_box(text: str) -> Box:
    """'x0,y0,x1,y1' -> (x0, y0, x1, y1): integers, x0, y0 >= 0, x1 > x0 and y1 > y0."""
    parts = [p.strip() for p in text.split(",")]
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"--box {text!r}: expected four integers x0,y0,x1,y1 in image pixels "
                        "(e.g. --box 120,80,360,320)") from None
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise UserError(f"--box {text!r}: expected 0 <= x0 < x1 and 0 <= y0 < y1 (x1, y1 exclusive)")
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
        raise ValueError(f"crop mode {mode!r} (box {box}); expected one of {CROP_MODES}, with a box for 'box'")
    if box[2] > width or box[3] > height:
        raise UserError(f"--box {','.join(map(str, box))} reaches outside the {width}x{height} image; "
                        "expected x1 <= width and y1 <= height")
    return box


def image_crop_box(image: np.ndarray, mode: str, box: Box | None, path: Path) -> Box:
    """`crop_box` of an (H, W, 3) image; a box outside it raises a UserError naming the file."""
    try:
        return crop_box((image.shape[1], image.shape[0]), mode, box)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def crop_for_model(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut `box` out of an (H, W, 3) image and resize it to (size, size, 3), aspect not kept.

    Area averaging when the box shrinks (no aliasing on large photos), bilinear when it grows; both
    align pixel centres, so `crop_to_image_xy` inverts the geometry exactly.
    """
    x0, y0, x1, y1 = box
    shrinks = x1 - x0 > size or y1 - y0 > size
    return cv2.resize(image[y0:y1, x0:x1], (size, size),
                      interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def crop_to_image_xy(points_xy: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop pixels of the (size, size) crop of `box` -> pixels of the original image.

    The exact inverse of `datasets.transforms.points_to_crop` (pixel-centre convention):
    x = x0 + (x' + 0.5) * w / size - 0.5 with w = x1 - x0, and the same for y with y0 and h = y1 - y0.
    Example: box (50, 0, 150, 100), size 64: the crop centre (31.5, 31.5) -> (99.5, 49.5), the image
    centre; the top-left crop pixel (0, 0) -> (50.28125, 0.28125).
    Any shape (..., 2) -> the same shape, float64.
    """
    x0, y0, x1, y1 = box
    scale = np.array([(x1 - x0) / size, (y1 - y0) / size])  # (2,) image pixels per crop pixel
    return np.array([x0, y0], dtype=np.float64) + (np.asarray(points_xy, dtype=np.float64) + 0.5) * scale - 0.5


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


def marker_radius(image_wh: tuple[int, int]) -> int:
    """Disc radius in pixels: 2 for images up to 256 pixels, growing with the larger side."""
    return max(2, round(max(image_wh) / 128))


def csv_rows(image: str, points_xy: np.ndarray) -> list[tuple[str, int, str, str]]:
    """landmarks.csv rows of one image: (image, landmark k, x, y) for each of its (K, 2) points, 3 decimals."""
    return [(image, k, f"{x:.3f}", f"{y:.3f}") for k, (x, y) in enumerate(points_xy)]


def read_images(paths: Sequence[Path], skip_bad_images: bool) -> tuple[list[tuple[int, np.ndarray]], list[Path]]:
    """([(position in paths, (H, W, 3) RGB image)], [paths skipped]); a bad image raises unless skipping."""
    images, skipped = [], []
    for i, path in enumerate(paths):
        try:
            images.append((i, read_image_rgb(path)))
        except UserError:
            if not skip_bad_images:
                raise
            skipped.append(path)
    return images, skipped


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def detect_crops(model: LandmarkAutoencoder, crops: Sequence[np.ndarray], device: torch.device) -> np.ndarray:
    """(B of (S, S, 3) uint8 RGB crops) -> (B, K, 2) float64 points (x, y) in crop pixels."""
    images = torch.from_numpy(np.stack([image_to_chw_float(c) for c in crops])).to(device)  # (B, 3, S, S)
    points_hm, _ = model.detect(images)  # (B, K, 2) heatmap pixels
    return heatmap_to_image_xy(points_hm.float()).cpu().numpy().astype(np.float64)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and/or folders (searched recursively for jpg/jpeg/png/bmp)")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file or a run folder (its last.pt; pass best.pt explicitly to use the best one)")
    p.add_argument("--out", type=Path, default=Path("results/detect"),
                   help="output folder for <stem>_landmarks.png and landmarks.csv (default: %(default)s)")
    p.add_argument("--crop", choices=CROP_MODES, default=None,
                   help="what the detector sees: centre = centred square (default; for photos with the face in the "
                        "middle), full = whole image squeezed to a square (for images already cropped to the face), "
                        "box = the --box region (default when --box is given)")
    p.add_argument("--box", default=None, metavar="x0,y0,x1,y1",
                   help="crop box in image pixels (x1, y1 exclusive), the same for all images; draw it around the "
                        "face with some margin, as square as possible")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per forward pass (default: %(default)s); lower it if memory runs out. "
                        "Results do not depend on it (eval-mode BatchNorm)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip images that do not decode or are truncated (counted and reported) instead of stopping; "
                        "without it the CSV keeps the rows of the images done before the bad one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def resolve_crop(crop: str | None, box_text: str | None) -> tuple[str, Box | None]:
    """(crop mode, box) from --crop and --box; --box alone means --crop box."""
    if box_text is None:
        if crop == "box":
            raise UserError("--crop box needs --box x0,y0,x1,y1 (e.g. --box 120,80,360,320)")
        return crop or "centre", None
    if crop not in (None, "box"):
        raise UserError(f"--box is only used with --crop box, not --crop {crop}; drop one of them")
    return "box", parse_box(box_text)


def run(args: argparse.Namespace) -> Path:
    """Detect, draw and write; returns the CSV path. User mistakes raise UserError."""
    mode, box = resolve_crop(args.crop, args.box)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected >= 1")
    paths = find_images(args.inputs)
    check_writable_folder(args.out, "the pictures and landmarks.csv (--out)")  # before the model is loaded
    device = resolve_device(args.device)
    ckpt_file = find_checkpoint(args.checkpoint)
    model, model_cfg, ckpt = load_model(ckpt_file, device)
    size = int(ckpt["config"]["data"]["image_size"])
    print(f"checkpoint {checkpoint_identity(ckpt_file)} (step {ckpt['step']}, K={model_cfg.num_points}) on {device}; "
          f"{len(paths)} images, crop {mode} resized to {size}x{size}")
    csv_path = args.out / "landmarks.csv"
    try:
        skipped = write_landmarks(model, paths, csv_path, args, (mode, box), size, device, model_cfg.num_points)
    except OSError as exc:  # a full disk: landmarks.csv keeps the rows flushed before
        raise UserError(f"{exc.filename or args.out}: cannot write ({os_reason(exc)}); {csv_path} keeps the rows of "
                        "the images done before; make room (or choose --out), then run again") from None
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {len(paths)} images that do not decode (first: {skipped[0]})",
                      SkippedDataWarning, stacklevel=2)
    done = len(paths) - len(skipped)
    print(f"wrote {csv_path} ({done * model_cfg.num_points} rows, K={model_cfg.num_points} per image) "
          f"and {done} PNGs to {args.out}" + (f"; skipped {len(skipped)} bad images" if skipped else ""))
    return csv_path


def write_landmarks(model: LandmarkAutoencoder, paths: Sequence[Path], csv_path: Path, args: argparse.Namespace,
                    crop: tuple[str, Box | None], size: int, device: torch.device, num_points: int) -> list[Path]:
    """Detect batch by batch, writing landmarks.csv (flushed after each batch) and a picture per image
    (`crop`: the mode and box of `resolve_crop`); returns the images skipped as bad (--skip-bad-images)."""
    mode, box = crop
    colors, stems = distinct_colors(num_points), output_stems(paths)
    args.out.mkdir(parents=True, exist_ok=True)
    skipped: list[Path] = []
    bar = tqdm(total=len(paths), desc="detect", unit="image", disable=args.quiet or len(paths) < 2, leave=False)
    with open(csv_path, "w", newline="", encoding="utf-8") as csv_file:  # rows are flushed batch by batch
        rows = csv.writer(csv_file, lineterminator="\n")
        rows.writerow(CSV_FIELDS)
        for start in range(0, len(paths), args.batch_size):
            batch_paths = paths[start:start + args.batch_size]
            images, bad = read_images(batch_paths, args.skip_bad_images)
            skipped += bad
            boxes = [image_crop_box(image, mode, box, batch_paths[i]) for i, image in images]
            crops = [crop_for_model(image, b, size) for (_, image), b in zip(images, boxes)]
            crop_points = detect_crops(model, crops, device) if crops else []
            for (i, image), image_box, points in zip(images, boxes, crop_points):
                points_xy = crop_to_image_xy(points, image_box, size)  # (K, 2) original-image pixels
                radius = marker_radius((image.shape[1], image.shape[0]))
                save_png(args.out / f"{stems[start + i]}_landmarks.png",
                         draw_points(image, points_xy, colors, radius=radius))
                rows.writerows(csv_rows(str(batch_paths[i]), points_xy))  # after its picture: rows of done images
            csv_file.flush()
            bar.update(len(batch_paths))
    bar.close()
    return skipped


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
