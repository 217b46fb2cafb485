"""Photos per second and, on an annotated split, accuracy of detect.py, run as a user runs it (its own process).

    python -m bench.detect --photos /data/MTFL/lfw_5590 --limit 500
    python -m bench.detect --annotations mtfl-val --data-root /data/MTFL --checkpoint checkpoints/mtfl_k10.pt

--photos DIR: the first --limit images of DIR (sorted, recursive). --annotations SPLIT --data-root DIR: the photos
of an annotated split (e.g. mtfl-val), scored against their annotations from landmarks.csv:
- found: % of photos where a face box holds the annotated eye centre (the largest such box is the face scored);
- named-point NME: the mean over the five named points of the distance to the annotation, divided by the
  annotated inter-ocular distance, averaged over the faces found;
- YuNet's own five points: the NME of the points the YuNet face finder gives itself (its face holding the eye
  centre), on the same faces: the baseline the named points should beat;
- mean-shape NME: the same for the mean training shape (the regressor's intercept, y_mean: the mean annotated
  shape in 128-px crops of its training faces) placed in the same crops (the checkpoint's face-crop map of each
  face box; for YuNet of the box of its five points, as detect.py). What the detector adds is the difference. Exact for photos under 2,000 px (not decoded reduced).
Speed: detect.py's own photos/s (from reading the first photo to writing the last row), the whole command's
(start-up and model loading included) and CPU seconds per photo of the process (all threads). A benchmark,
not a test: it asserts nothing. The default checkpoint is detect.py's (the shipped model).
"""

from __future__ import annotations

import argparse
import csv
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datasets import load_records
from datasets.records import image_size_wh
from datasets.transforms import clamp_box, crop_to_image_xy
from inference.api import SHIPPED_CHECKPOINT
from inference.crops import FaceCropping
from inference.finders import face_holding, load_yunet, points_box, yunet_detections
from inference.photo import read_photo
from utils.checkpoint import read_checkpoint
from utils.dataset_registry import IMAGE_SUFFIXES
from utils.errors import UserError, exit_code_of
from utils.geometry import EVAL_CROP_SIZE
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import RidgeModel, interocular_distance, norm_to_crop_px, normalised_point_errors

REPO = Path(__file__).resolve().parents[1]


def run_detect(photos: list[Path], args: argparse.Namespace, out: Path) -> dict:
    """Run detect.py on the photos in a child process; its timings and CPU seconds."""
    command = [sys.executable, str(REPO / "detect.py"), "--out", str(out), "--quiet", "--workers", str(args.workers),
               "--frame", "stored" if args.annotations else "displayed"]  # annotations are in stored pixels
    command += ["--checkpoint", str(args.checkpoint)] if args.checkpoint else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command + [str(p) for p in photos], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise UserError(f"detect.py failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    own = re.search(r"([0-9.]+) s, ([0-9.]+) photos/s", done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "own_s": float(own.group(1)) if own else float("nan"),
            "own_rate": float(own.group(2)) if own else float("nan"), "cpu_s": cpu,
            "first_line": done.stdout.split("\n")[0]}


def read_faces(csv_path: Path) -> dict[str, list[dict]]:
    """{image: [{"box": (4,), "named": (5, 2) or None}, ...] in face order} from landmarks.csv."""
    faces: dict[str, dict[int, dict]] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            face = faces.setdefault(row["image"], {}).setdefault(int(row["face"]), {
                "box": tuple(int(row[c]) for c in ("x0", "y0", "x1", "y1")), "named": {}})
            if row["landmark"] in LANDMARK_NAMES:
                face["named"][row["landmark"]] = (float(row["x"]), float(row["y"]))
    def named(face: dict) -> np.ndarray | None:
        return np.array([face["named"][name] for name in LANDMARK_NAMES]) if face["named"] else None

    return {image: [{"box": f["box"], "named": named(f)} for _, f in sorted(by_index.items())]
            for image, by_index in faces.items()}


def mean_shape_128(ckpt: dict) -> np.ndarray | None:
    """The regressor's intercept as (5, 2) points of a 128-px crop (None without a regressor, or without a bias)."""
    entry = ckpt.get("named_points")
    if not entry:
        return None
    regressor = RidgeModel.from_dict(entry["regressor"], ckpt["path"])
    return None if not regressor.y_mean.any() else norm_to_crop_px(regressor.y_mean.reshape(-1, 2))


def yunet_points(record, net) -> np.ndarray | None:
    """(5, 2) YuNet's own points of the YuNet face holding the annotated eye centre, stored pixels (or None)."""
    photo = read_photo(record.path, upright=False)
    boxes, points = yunet_detections(photo.pixels, net)
    scale = np.asarray(photo.scale_xy)
    index = face_holding([tuple(b) for b in (boxes * np.tile(scale, 2))], record.points_xy[:2].mean(axis=0))
    return None if index is None else (points[index] + 0.5) * scale - 0.5


def score(records: list, faces: dict[str, list[dict]], ckpt: dict) -> dict:
    """Found %, named-point NME, YuNet's own points' NME and mean-shape NME (percent) of the annotated photos."""
    cropping = FaceCropping.from_dict(ckpt["face_crop"], ckpt["path"]) if "face_crop" in ckpt else None
    mean_shape = mean_shape_128(ckpt)
    net = load_yunet()
    named_errors, shape_errors, yunet_errors, found = [], [], [], 0
    for record in records:
        mine = faces.get(str(record.path), [])
        index = face_holding([f["box"] for f in mine], record.points_xy[:2].mean(axis=0))
        if index is None:
            continue
        found += 1
        truth = record.points_xy[None].astype(np.float64)  # (1, 5, 2)
        iod = interocular_distance(truth)
        if mine[index]["named"] is not None:
            named_errors.append(normalised_point_errors(mine[index]["named"][None], truth, iod).mean())
        if (own := yunet_points(record, net)) is not None:
            yunet_errors.append(normalised_point_errors(own[None], truth, iod).mean())
        if mean_shape is not None and cropping is not None:
            box, size = mine[index]["box"], image_size_wh(record.path)
            if cropping.finder == "yunet" and own is not None:  # the anchor detect.py used: YuNet's points' box
                box = clamp_box(tuple(round(v) for v in points_box(own)), size)
            crop = cropping.box_to_crop.crop_box(box, size)
            placed = crop_to_image_xy(mean_shape, crop, EVAL_CROP_SIZE)[None]
            shape_errors.append(normalised_point_errors(placed, truth, iod).mean())
    def percent(values: list) -> str:
        return f"{100 * np.mean(values):.2f} %" if values else "n/a"

    return {"found": f"{found} of {len(records)} ({100 * found / len(records):.1f} %)",
            "named NME (faces found)": percent(named_errors),
            "YuNet's own five points NME (those of the faces found that YuNet finds)":
                f"{percent(yunet_errors)} ({len(yunet_errors)} faces)",
            "mean-shape NME (same crops)": percent(shape_errors)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, help="a folder of photos (searched recursively)")
    p.add_argument("--annotations", help="an annotated split to score, e.g. mtfl-val (with --data-root)")
    p.add_argument("--data-root", type=Path, help="the split's data set root, e.g. /data/MTFL")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos")
    p.add_argument("--checkpoint", type=Path, default=None, help=f"default: detect.py's, {SHIPPED_CHECKPOINT.name}")
    p.add_argument("--workers", type=int, default=2, help="detect.py --workers (default %(default)s)")
    p.add_argument("--keep", type=Path, default=None, help="write detect.py's outputs here instead of a temp folder")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if (args.photos is None) == (args.annotations is None) or (args.annotations and args.data_root is None):
        raise UserError("give --photos DIR, or --annotations SPLIT with --data-root DIR")
    if args.photos is not None:
        records = []
        photos = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:args.limit]
    else:
        records = load_records(args.annotations, args.data_root)[:args.limit]
        photos = [r.path for r in records]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "out"
        timing = run_detect(photos, args, out)
        csv_files = sorted(out.parent.glob(f"{out.name}*/landmarks.csv"), key=lambda p: p.stat().st_mtime)
        rows = {"photos": str(len(photos))}
        if records:
            ckpt = read_checkpoint(args.checkpoint or SHIPPED_CHECKPOINT)
            rows |= score(records, read_faces(csv_files[-1]), ckpt)
    rows |= {"photos/s, detect.py's own count": f"{timing['own_rate']:.1f} ({timing['own_s']:.1f} s)",
             "photos/s, whole command": f"{len(photos) / timing['wall_s']:.1f} ({timing['wall_s']:.1f} s)",
             "CPU s per photo (all threads)": f"{timing['cpu_s'] / len(photos):.4f}"}
    print(timing["first_line"])
    print("| what | value |\n|---|---|")
    for key, value in rows.items():
        print(f"| {key} | {value} |")


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
