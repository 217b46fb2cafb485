"""Facial landmarks on your own photos: a picture and rows of landmarks.csv per face.

    python detect.py photos/                                   # the shipped model, faces found in each photo
    python detect.py --checkpoint runs/mtfl_k10/last.pt face.jpg --box 120,80,360,320
    python detect.py group.jpg --boxes faces.csv               # your face boxes, one line per face

Without --checkpoint the shipped model checkpoints/mtfl_k10.pt is used:
  {shipped}.
Folders are searched recursively for .jpg/.jpeg/.png/.bmp, in sorted order, through symlinked subfolders
too; broken links, and --out with its numbered siblings (<out>-2, ...), are skipped with a note.
The same pipeline as a Python call: `from inference import find_landmarks` (README, "Your own images").

What the detector sees (--crop; it works best on a face framed as in training):
- `faces` (the default with a checkpoint that carries a face-crop map, as the shipped one does): faces
  are found by the face finder that the checkpoint's map was fitted on (--faces: YuNet, a small CNN
  shipped as checkpoints/yunet_s_640_640.onnx, for the shipped model; the Haar cascade for checkpoints
  exported before it); each face (for YuNet: the box of its own five points) goes through the
  checkpoint's map to its training crop (learnt by export_model.py), so the face fills the crop as in
  training. A checkpoint with looks
  (the shipped one) also shows the detector each face in four shifted crops and takes the named points
  from the points of all five (the raw K points are those of the main crop).
- `box`: face boxes you give: `--box x0,y0,x1,y1` (image pixels, x1 and y1 exclusive) for every image,
  or `--boxes FILE.csv` with the header `image,x0,y0,x1,y1` and one line per face (several lines for
  several faces of an image; image paths as given on the command line or relative to the CSV's folder).
  With a face-crop map a given box is a face box and goes through the map; without one the box itself
  is the crop.
- `centre` (the default otherwise): the centred square of side min(width, height).
- `full`: the whole image squeezed to a square (images already cropped to the face).

Outputs in --out: one `landmarks.csv` with the columns
  image, face, x0, y0, x1, y1, landmark, x, y
`face` is the face's index in its image (0 = the largest box; the number drawn beside the face on its
picture), x0..y1 its box in image pixels (the face box found or given; for centre and full the region the
detector saw); then one row per point: the K detected points (`landmark` 0..K-1) and, when the checkpoint
carries a named-point regressor, the five named points (`landmark` = left_eye, right_eye, nose, left_mouth,
right_mouth). (x, y) are pixels of the image as viewers show it (--frame displayed, the default: EXIF
orientation applied, so a phone photo stored sideways is upright; --frame stored: the file's pixel rows),
pixel-centre convention (the centre of the top-left pixel is (0, 0)), 3 decimals: x = x0 + (x_crop + 0.5)
* w / S - 0.5 for a crop of side S showing a region of width w from x0, and the same for y.
Each image gets a picture, `<stem>_landmarks.png` in the image's folder relative to the images' common
folder (`a/1_landmarks.png` for a/1.jpg; images of one folder sharing a stem keep their suffix,
`1.jpg_landmarks.png`): each face's box and index, its K points (small discs, landmark k always in the
same colour) and its named points (crosses, one colour per name, with a legend); a header names the face
finder and the number of faces, or says that none was found (such an image gets no rows and a note).
Photos with a side of 2,000 px or more are decoded reduced (1/2, 1/4 or 1/8, keeping at least 1,000 px)
and drawn at that size; the CSV stays in full pixels. Images over --max-pixels (default 200 MP, read from
the header) are refused before decoding. `run.json` records the command, the model file and its sha256,
the face finder (with its file and sha256), the coordinate frame and the picture of each image.

A new or empty --out is written in place; one that holds files (an earlier run) is kept, and the results
go to the next free <out>-2, <out>-3, ... (printed). Rows follow their picture and are flushed batch by
batch: a bad image (one that does not decode, is truncated or is over --max-pixels), Ctrl-C or a full disk
stops the run with one line, and landmarks.csv keeps the rows of every image before it; --skip-bad-images
skips (and counts) bad images instead. The model runs in eval mode: a face's points do not depend on the
others.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from datasets.records import SkippedDataWarning, read_text_lines
from inference.api import SHIPPED_CHECKPOINT, Detector, load_detector, photo_inputs
from inference.crops import FaceInput, face_input
from inference.drawing import draw_faces
from inference.finders import FINDERS, YUNET_FILE, YUNET_SHA256
from inference.photo import DEFAULT_MAX_PIXELS, FRAMES, Photo, frame_size_wh, quiet_header_reads, read_photo
from inference.points import FaceLandmarks, locate_faces
from utils.checkpoint import checkpoint_identity, file_sha256, git_sha, read_checkpoint
from utils.dataset_registry import IMAGE_SUFFIXES
from utils.device import resolve_device
from utils.errors import UserError, exit_code_of
from utils.extraction import ordered_map
from utils.files import atomic_write, check_writable_folder, os_reason
from utils.landmarks import LANDMARK_NAMES
from utils.visualize import save_png

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT  # checkpoints/mtfl_k10.pt of this repository
CROP_MODES = ("faces", "centre", "full", "box")
CSV_FIELDS = ("image", "face", "x0", "y0", "x1", "y1", "landmark", "x", "y")
BOXES_HEADER = ("image", "x0", "y0", "x1", "y1")
PICTURE_SUFFIX = "_landmarks.png"
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


def read_boxes_file(path: Path, images: Sequence[Path], upright: bool = True) -> dict[Path, list[GivenBox]]:
    """{image: its boxes} from a CSV with the header `image,x0,y0,x1,y1` and one line per face.

    An image is named as given on the command line or relative to the CSV's folder. Boxes are in the frame the
    photos are read in (`upright`: the displayed one). A malformed line, an image not among `images` or a box
    reaching outside its image is a one-line UserError naming file:line.
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
        check_inside(box, frame_size_wh(image, upright), f"{where}: box", image)
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


def is_output_folder(folder: Path, out: Path) -> bool:
    """Whether `folder` is --out or one of its numbered siblings <out>-2, <out>-3, ... (an earlier run's)."""
    real, out = Path(os.path.realpath(folder)), Path(os.path.realpath(out))
    numbered = re.fullmatch(re.escape(out.name) + r"-\d+", real.name) is not None
    return real == out or (real.parent == out.parent and numbered)


def walk_images(folder: Path, out: Path, notes: list[str]) -> list[Path]:
    """Image files under `folder`, sorted, following symlinked subfolders (each real folder once); broken links
    and --out folders (see `is_output_folder`) are skipped with a note each."""
    images, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = Path(root)
        if os.path.realpath(root) in seen or is_output_folder(here, out):
            if is_output_folder(here, out):
                notes.append(f"{here}: skipped, it is the output folder (--out) or an earlier run's")
            dirs.clear()
            continue
        seen.add(os.path.realpath(root))
        for name in sorted(dirs + files):
            path = here / name
            if path.is_symlink() and not path.exists():
                notes.append(f"{path}: skipped, a broken link (to {os.readlink(path)})")
        images += [here / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES and (here / f).is_file()]
        dirs.sort()
    return sorted(images)


def find_images(inputs: Sequence[str | Path], out: Path | None = None) -> tuple[list[Path], list[str]]:
    """(image files, notes) from files and folders, in the order given; folders recursively, sorted.

    Folders contribute files whose suffix is in IMAGE_SUFFIXES (any case), through symlinked subfolders too;
    broken links and the --out folder `out` (and its numbered siblings) are skipped with a note. Files given
    directly are taken as they are. A file reached twice is kept once.
    """
    found: list[Path] = []
    notes: list[str] = []
    out = out if out is not None else Path(os.devnull)
    for item in map(Path, inputs):
        if item.is_file():
            found.append(item)
        elif item.is_dir():
            images = walk_images(item, out, notes)
            if not images:
                raise UserError(f"{item}: no images in this folder; expected {'/'.join(IMAGE_SUFFIXES)} files")
            found.extend(images)
        else:
            raise UserError(f"{item}: no such image file or folder"
                            + (f" (a broken link to {os.readlink(item)})" if item.is_symlink() else ""))
    seen: set[Path] = set()
    unique = []
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, notes


def picture_names(paths: Sequence[Path]) -> list[str]:
    """A distinct picture path per image, relative to --out, that maps back to it: the image's folder relative
    to the images' common folder, then `<stem>_landmarks.png`; images of one folder sharing a stem keep their
    suffix (`1.jpg_landmarks.png`, `1.png_landmarks.png`), and any name still taken gets `-2`, `-3`, ...
    (compared without case, for case-insensitive file systems). run.json lists the mapping."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in absolute])) if absolute else Path()
    relative = [p.relative_to(root) for p in absolute]
    stems = Counter((r.parent, r.stem.lower()) for r in relative)
    names = [(r.parent / (r.stem if stems[(r.parent, r.stem.lower())] == 1 else r.name)).as_posix() for r in relative]
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 1
        while (candidate + PICTURE_SUFFIX).lower() in taken:
            number += 1
            candidate = f"{name}-{number}"
        taken.add((candidate + PICTURE_SUFFIX).lower())
        unique.append(candidate + PICTURE_SUFFIX)
    return unique


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


def csv_rows(image: str, face: int, found: FaceLandmarks) -> list[tuple]:
    """landmarks.csv rows of one face: its K points, then its named points (if any), 3 decimals."""
    labels: list = list(range(len(found.points_xy)))
    points = [found.points_xy]
    if found.named_xy is not None:
        labels += list(LANDMARK_NAMES)
        points.append(found.named_xy)
    return [(image, face, *found.face_box, label, f"{x:.3f}", f"{y:.3f}")
            for label, (x, y) in zip(labels, [p for block in points for p in block])]


# ---------------------------------------------------------------------------------------------
# The model and what it expects
# ---------------------------------------------------------------------------------------------


def crop_settings(config: dict) -> str:
    """'32x32 crops with a 30 % margin' from a checkpoint's config dict."""
    data = config["data"]
    return (f"{data['image_size']}x{data['image_size']} crops with a {data['tight']} % margin (the box of the "
            f"five points widened by {data['tight']} % of their extent on each side)")


def shipped_model_note() -> str:
    """What the help says of the shipped model: its crops and face finder, read from the file when it is there."""
    if not DEFAULT_CHECKPOINT.is_file():
        return "it is not in this copy of the repository yet: make it with bash scripts/ship_model.sh MTFL_FOLDER"
    try:
        ckpt = read_checkpoint(DEFAULT_CHECKPOINT)
        config, finder = ckpt["config"], ckpt.get("face_crop", {}).get("finder", "haar")
    except (UserError, KeyError, TypeError, AttributeError):
        return "it does not read as a checkpoint (a partial copy?)"
    return (f"the shipped model sees {crop_settings(config)}; K={config['model']['num_points']}; its face-crop "
            f"map was fitted on {finder} boxes")


def check_finder(detector: Detector, faces: str | None, mode: str) -> str | None:
    """The face finder of a run: the checkpoint's (`--faces` may name it; another is refused in one line)."""
    if mode != "faces":
        return None
    if faces is not None and faces != detector.finder:
        raise UserError(f"--faces {faces}: {detector.file}'s face-crop map was fitted on {detector.finder} boxes, and "
                        f"a map is wrong on another finder's boxes; drop --faces (or export the model with "
                        f"export_model.py --faces {faces})")
    return detector.finder


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    """What every photo goes through: the crop mode and its boxes, how photos are read, the face finder."""

    mode: str
    box: Box | None = None
    boxes: dict[Path, list[GivenBox]] = field(default_factory=dict)
    skip_bad_images: bool = False
    upright: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    finder: str | None = None  # the face finder of --crop faces (None otherwise)


@dataclass
class Prepared:
    """One photo read and its faces cut out (photo None: skipped as bad)."""

    path: Path
    photo: Photo | None
    faces: list[FaceInput]


def prepare_photo(path: Path, job: Job, detector: Detector) -> Prepared:
    """Read a photo and make its faces' detector inputs (in a worker thread)."""
    try:
        photo = read_photo(path, job.upright, job.max_pixels)
    except UserError:
        if not job.skip_bad_images:
            raise
        return Prepared(path, None, [])
    if job.mode == "faces":
        return Prepared(path, photo, photo_inputs(photo, detector))
    if job.mode != "box":
        return Prepared(path, photo, [face_input(photo, crop_box(photo.size_wh, job.mode), detector.size)])
    if job.box is not None:
        try:
            given = [crop_box(photo.size_wh, "box", job.box)]
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    else:
        given = [g.box for g in job.boxes.get(path, [])]
        for g in job.boxes.get(path, []):
            check_inside(g.box, photo.size_wh, f"{g.where}: box", path)
    return Prepared(path, photo, photo_inputs(photo, detector, given))


@dataclass
class Tally:
    """Counts of a run, for its last line."""

    photos: int = 0
    faces: int = 0
    rows: int = 0
    faceless: int = 0
    skipped: list[Path] = field(default_factory=list)


def source_of(job: Job) -> str:
    """How the faces of a run came: 'found by yunet', 'given', 'centre crop', 'whole image'."""
    return {"faces": f"found by {job.finder}", "box": "given", "centre": "(centre crop)",
            "full": "(whole image)"}[job.mode]


def write_batch(batch: list[Prepared], detector: Detector, job: Job, out: Path, pictures: dict, rows: csv.writer,
                tally: Tally, bar: tqdm) -> None:
    """Detect the faces of a batch of photos; write each photo's picture, then its rows."""
    faces = [face for prepared in batch for face in prepared.faces]
    looks_regressor = detector.cropping.looks_regressor if detector.cropping else None
    found = iter(locate_faces(detector.model, faces, detector.size, detector.device, detector.regressor,
                              looks_regressor=looks_regressor))
    for prepared in batch:
        if prepared.photo is None:
            tally.skipped.append(prepared.path)
            continue
        mine = [next(found) for _ in prepared.faces]
        picture = draw_faces(prepared.photo, mine, source_of(job))
        save_png(out / pictures[prepared.path], picture)  # atomic: never half a picture
        for index, face in enumerate(mine):  # after its picture: the CSV holds rows of finished images only
            face_rows = csv_rows(str(prepared.path), index, face)
            rows.writerows(face_rows)
            tally.rows += len(face_rows)
        tally.photos, tally.faces = tally.photos + 1, tally.faces + len(mine)
        if not mine:
            tally.faceless += 1
            bar.write(f"note: {prepared.path}: {'no face found' if job.mode == 'faces' else 'no face box given'}; "
                      "no rows for it", file=sys.stderr)


def write_landmarks(detector: Detector, job: Job, paths: Sequence[Path], out: Path, args: argparse.Namespace,
                    tally: Tally) -> None:
    """Read and cut photos in worker threads while the detector runs on batches of their faces; write
    landmarks.csv (flushed after each batch) and a picture per photo. A bad image (without --skip-bad-images)
    or Ctrl-C first writes the photos read before it, then stops."""
    pictures = dict(zip(paths, picture_names(paths)))
    batch: list[Prepared] = []
    bar = tqdm(total=len(paths), desc="detect", unit="image", disable=args.quiet or len(paths) < 2, leave=False)
    with open(out / "landmarks.csv", "w", newline="", encoding="utf-8") as csv_file:
        rows = csv.writer(csv_file, lineterminator="\n")
        rows.writerow(CSV_FIELDS)
        csv_file.flush()
        try:
            for prepared in ordered_map(partial(prepare_photo, job=job, detector=detector), paths, args.workers):
                batch.append(prepared)
                if sum(len(p.faces) for p in batch) >= args.batch_size:
                    done, batch = batch, []
                    write_batch(done, detector, job, out, pictures, rows, tally, bar)
                    csv_file.flush()
                    bar.update(len(done))
        except (UserError, KeyboardInterrupt):  # a bad image or Ctrl-C: the photos read before it keep their rows
            write_batch(batch, detector, job, out, pictures, rows, tally, bar)
            raise
        finally:
            bar.close()
        write_batch(batch, detector, job, out, pictures, rows, tally, bar)


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def finder_record(finder: str | None) -> dict | str:
    """What run.json says of the face finder: its name and, for YuNet, its file and sha256."""
    if finder == "yunet":
        return {"name": "yunet", "file": YUNET_FILE.name, "sha256": YUNET_SHA256}
    return {"name": "haar", "file": "haarcascade_frontalface_alt2.xml (inside OpenCV)",
            "opencv": cv2.__version__} if finder == "haar" else "none (faces given or cropped by --crop)"


def write_provenance(out: Path, detector: Detector, job: Job, paths: Sequence[Path], tally: Tally | None,
                     argv: Sequence[str]) -> None:
    """run.json beside landmarks.csv: the command, the model file and its sha256, the face finder, the
    coordinate frame, the picture of each image; the counts once the run is done (null before)."""
    frame = "displayed (EXIF orientation applied)" if job.upright else "stored (EXIF orientation ignored)"
    record = {
        "command": shlex.join(["python", "detect.py", *argv]),
        "cwd": os.getcwd(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(), "model": {"file": str(detector.file), "sha256": file_sha256(detector.file)},
        "crop": job.mode, "face_finder": finder_record(job.finder),
        "frame": frame, "coordinates": "(x, y) pixels of the image in that frame, pixel centres, (0, 0) the "
        "centre of the top-left pixel", "max_pixels": job.max_pixels,
        "pictures": {name: str(path) for path, name in zip(paths, picture_names(paths))},
        "done": None if tally is None else {"images": tally.photos, "faces": tally.faces, "rows": tally.rows,
                                             "skipped": [str(p) for p in tally.skipped]},
    }
    atomic_write(out / "run.json", lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))


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
                   help="output folder for the pictures, landmarks.csv and run.json (default: %(default)s); one that "
                        "holds files already is kept and the results go to the next free <out>-2, <out>-3, ...")
    p.add_argument("--crop", choices=CROP_MODES, default=None,
                   help="what the detector sees: faces = faces found in each photo (default with a checkpoint "
                        "that carries a face-crop map), centre = centred square (default otherwise), full = whole "
                        "image squeezed to a square, box = the --box or --boxes face boxes (default when given)")
    p.add_argument("--faces", choices=FINDERS, default=None,
                   help="the face finder of --crop faces; default and only choice: the one the checkpoint's "
                        "face-crop map was fitted on (yunet for the shipped model; haar for checkpoints exported "
                        "before YuNet). Another is refused: a map fitted on one finder's boxes is wrong on another's")
    p.add_argument("--box", default=None, metavar="x0,y0,x1,y1",
                   help="a face box in image pixels (x1, y1 exclusive), the same for every image")
    p.add_argument("--boxes", type=Path, default=None, metavar="FILE.csv",
                   help="face boxes per image: a CSV with the header image,x0,y0,x1,y1 and one line per face")
    p.add_argument("--frame", choices=FRAMES, default="displayed",
                   help="displayed (default): photos turned upright by their EXIF orientation, as viewers show "
                        "them, and every coordinate in that frame; stored: the pixel rows as the file holds them "
                        "(the frame of annotations made on the stored pixels, e.g. MTFL's)")
    p.add_argument("--max-pixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6, metavar="MP",
                   help="refuse (or with --skip-bad-images skip) images of more megapixels than this, read from "
                        "the header before decoding (default: %(default)g MP; a 200 MP photo takes about 1.5 GB)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="faces per forward pass (default: %(default)s); lower it if memory runs out. "
                        "Results do not depend on it (eval-mode BatchNorm)")
    p.add_argument("--workers", type=int, default=2,
                   help="threads that read photos and find faces while the detector runs (default: %(default)s; "
                        "0: all in one thread). Results do not depend on it")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip images that do not decode, are truncated or are over --max-pixels (counted and "
                        "reported) instead of stopping; without it the run stops at the first bad image, and "
                        "landmarks.csv keeps the rows of every image before it")
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


def describe(detector: Detector, job: Job, images: int) -> str:
    """The first line of a run: the checkpoint, what it sees, the crop and face finder, the named points."""
    crop = {"faces": f"faces found ({job.finder}) -> training crops", "centre": "centred square",
            "full": "whole image", "box": "given face boxes" + (" -> training crops" if detector.cropping else "")}
    named = (f"named points fitted on {detector.ckpt['named_points'].get('fitted_on', '?')}" if detector.regressor
             else "no named points (the checkpoint has no regressor)")
    return (f"checkpoint {checkpoint_identity(detector.file)} (step {detector.ckpt['step']}, K={detector.num_points}) "
            f"on {detector.device}: {crop_settings(detector.ckpt['config'])}; {plural(images, 'image')}, crop "
            f"{crop[job.mode]}; {named}; {'displayed' if job.upright else 'stored'} frame")


def check_options(args: argparse.Namespace) -> None:
    """One-line errors for option values out of range and option conflicts, before any file is read."""
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0),
                                 ("--max-pixels", args.max_pixels, 1e-6)):
        if value < minimum:
            raise UserError(f"{flag} {value}: expected >= {minimum:g}")
    resolve_crop(args.crop, args.box, args.boxes, True)


def summary(out: Path, tally: Tally, job: Job, seconds: float) -> str:
    """The last line of a run: what was written, by which finder, how fast."""
    return (f"wrote {out / 'landmarks.csv'} ({tally.rows} rows: {plural(tally.faces, 'face')} "
            + (f"found by {job.finder} " if job.finder else "")
            + f"in {plural(tally.photos, 'image')}{f', {tally.faceless} without a face' if tally.faceless else ''}), "
            f"run.json and {plural(tally.photos, 'picture')} to {out}"
            + (f"; skipped {len(tally.skipped)} bad images" if tally.skipped else "")
            + f"; {seconds:.1f} s, {tally.photos / max(seconds, 1e-9):.1f} photos/s")


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> Path:
    """Detect, draw and write; returns the CSV path. User mistakes raise UserError."""
    check_options(args)
    box = parse_box(args.box) if args.box is not None else None
    out = free_out_folder(args.out)
    paths, notes = find_images(args.inputs, args.out)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    upright = args.frame == "displayed"
    boxes = read_boxes_file(args.boxes, paths, upright) if args.boxes is not None else {}
    check_writable_folder(out, "the pictures and landmarks.csv (--out)")  # before the model is loaded
    if out != args.out:
        print(f"{args.out} holds an earlier run's files: writing to {out}")
    if args.checkpoint is None and not DEFAULT_CHECKPOINT.is_file():
        raise UserError(f"{DEFAULT_CHECKPOINT}: the shipped model is not in this copy of the repository; make it "
                        "with bash scripts/ship_model.sh MTFL_FOLDER, or pass --checkpoint RUN/last.pt")
    detector = load_detector(args.checkpoint or DEFAULT_CHECKPOINT, resolve_device(args.device))
    mode = resolve_crop(args.crop, args.box, args.boxes, detector.cropping is not None)
    if mode == "faces" and detector.cropping is None:
        raise UserError(f"{detector.file}: no face-crop map (from a face box to the crop it was trained on) to find "
                        "faces with; export one with export_model.py, or use --crop centre/full or --box")
    job = Job(mode, box, boxes, args.skip_bad_images, upright, round(args.max_pixels * 1e6),
              check_finder(detector, args.faces, mode))
    print(describe(detector, job, len(paths)))
    cv2.setNumThreads(1)  # the worker threads are the parallelism
    quiet_header_reads()
    start, threads, tally = time.perf_counter(), torch.get_num_threads(), Tally()
    if detector.device.type == "cpu":  # the cores the workers leave; torch's spinning threads would slow them down
        torch.set_num_threads(max(1, usable_cores() - args.workers))
    kept = f"{out / 'landmarks.csv'} keeps the rows of the images done before"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_provenance(out, detector, job, paths, None, argv)
        write_landmarks(detector, job, paths, out, args, tally)
        write_provenance(out, detector, job, paths, tally, argv)
    except OSError as exc:  # a full disk: landmarks.csv keeps the rows flushed before
        raise UserError(f"{exc.filename or out}: cannot write ({os_reason(exc)}); {kept}; make room (or choose "
                        "--out), then run again") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted (Ctrl-C) after {plural(tally.photos, 'image')}; {kept}") from None
    finally:
        torch.set_num_threads(threads)
    if tally.skipped:
        warnings.warn(f"skipped {len(tally.skipped)} of {len(paths)} images that do not decode "
                      f"(first: {tally.skipped[0]})", SkippedDataWarning, stacklevel=2)  # or over --max-pixels
    print(summary(out, tally, job, time.perf_counter() - start))
    return out / "landmarks.csv"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return exit_code_of(run, build_parser().parse_args(argv), argv)
    except KeyboardInterrupt as exc:  # one line, not a traceback; what was written stays
        print(f"error: {exc or 'interrupted (Ctrl-C) before any image was done'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
