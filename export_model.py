"""Turn a trained run into the small detector-only file that detect.py uses by default.

    python export_model.py --checkpoint runs/mtfl-<date>-<time>/last.pt --data-root /data/MTFL \\
        --out checkpoints/mtfl_k10.pt

On the faces of an annotated split (default mtfl-train; any annotated split works, e.g. mafl-train of
the synthetic CelebA-layout set) it fits, and stores beside the detector's weights:

1. the face-crop map: faces are found by --faces (YuNet by default, `inference.finders`; the map records
   the finder, and detect.py uses it); the face whose box holds the annotated eye centre is paired with
   its training crop (the landmark-driven box with the checkpoint's margin data.tight), and
   `fit_box_to_crop` learns the map from the one to the other; `work_side` is the median longer side of
   those crops, in pixels;
2. the named-point regressor: the detector runs on the crops detect.py makes from those face boxes
   (`inference.crops.face_input`, the same function), and a ridge map (reg 1e-4) from its K points to the
   five annotated points in the same crops (128-px crop pixels) is fitted;
3. the looks: the detector also sees each face in four further crops (the main one shifted by 5 % of the
   box right, left, down and up), and a second ridge map from the points of all five looks (in the main
   crop's pixels) to the five named points is fitted on the same faces; detect.py uses it for faces found or
   given as boxes.

It prints one line per fit (faces found of all, the map, the regressor's training NME) and writes, each
atomically: OUT (format, config, the `detector.*` weights, networks "detector", step, git_sha, exported_from,
named_points, face_crop; docs/checkpoints.md, "The shipped model") and OUT without .pt + `.expected.json`:
the face boxes, K points and named points that the written file gives on a few fixed synthetic faces (and,
with an MTFL --data-root, on the first mtfl-val photos), which tests/test_export_model.py checks.

Each ridge map needs at least 5 faces per input (K = 10: 100 faces for the 20 inputs of the K points, 500 for the
100 of the five looks); fewer are refused unless --force (a smoke run). Ctrl-C stops it with one line, nothing
written. What each choice measured: docs/checkpoints.md, "The shipped model".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from datasets import load_records
from inference.crops import BoxToCrop, FaceCropping, FaceInput, face_input, fit_box_to_crop, photo_face_inputs
from inference.finders import DEFAULT_FINDER, FINDERS, face_holding, photo_faces, thread_finder
from inference.photo import Photo, quiet_header_reads, read_photo
from inference.points import detect_crops, locate_faces, look_points, read_named_points, to_eval_scale
from datasets.records import FaceRecord
from datasets.synthetic import render_face
from datasets.transforms import landmark_crop_box, points_to_crop
from model import load_model
from utils.checkpoint import DETECTOR_ONLY, FORMAT, OUTPUT_RULE, atomic_torch_save, check_output, \
    checkpoint_identity, file_sha256, find_checkpoint, git_sha
from utils.dataset_registry import EVAL_SPLITS, SPLIT_LAYOUTS
from utils.device import resolve_device
from utils.errors import UserError, exit_code_of
from utils.extraction import ordered_map
from utils.files import atomic_write, check_writable_folder, os_reason
from utils.geometry import EVAL_CROP_SIZE
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import RidgeModel, apply_point_regressor, fit_point_regressor, interocular_distance, \
    normalised_point_errors

REG = 1e-4  # the ridge penalty of the named-point regressor (the evaluation protocol's)
SYNTHETIC_SEEDS = ((0, 1), (0, 3), (0, 6))  # datasets.synthetic.render_face seeds that the cascade finds
MTFL_EXPECTED = 5  # first mtfl-val photos in the .expected.json, with an MTFL --data-root
MIN_FACES = 2
FACES_PER_INPUT = 5  # a ridge map is fitted on at least this many faces per input, unless --force
LOOK_SHIFTS = ((0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))  # further looks: shifted by these x box size


@dataclass(frozen=True)
class TrainingFace:
    """A face of the split that the finder found: its record, face box, anchor (`inference.finders.Found`) and
    training crop, stored pixels."""

    record: FaceRecord
    face_box: tuple[int, int, int, int]
    anchor: tuple[int, int, int, int]
    crop_box: tuple[int, int, int, int]


def find_training_face(record: FaceRecord, tight: int, finder: str = DEFAULT_FINDER) -> TrainingFace | None:
    """The finder's face holding the annotated eye centre, paired with its landmark-driven crop (or None); the
    photo in its stored frame, as its annotation."""
    photo = read_photo(record.path, upright=False)
    faces = photo_faces(photo, thread_finder(finder))
    index = face_holding([face.box for face in faces], record.points_xy[:2].mean(axis=0))
    if index is None:
        return None
    box, anchor = faces[index]
    return TrainingFace(record, box, anchor, landmark_crop_box(record.points_xy, tight, photo.size_wh))


def fit_cropping(faces: list[TrainingFace], total: int, split: str) -> FaceCropping:
    """The face-crop map (from the anchors), the map from face boxes to anchors (None where they are the same)
    and the work side of the found faces; prints its line."""
    crops = np.array([f.crop_box for f in faces], dtype=np.float64)  # (N, 4)
    boxes, anchors = np.array([f.face_box for f in faces]), np.array([f.anchor for f in faces])
    box_to_crop = fit_box_to_crop(anchors, crops)
    box_to_anchor = None if np.array_equal(boxes, anchors) else fit_box_to_crop(boxes, anchors)
    work_side = int(round(float(np.median(np.maximum(crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1])))))
    m = box_to_crop
    print(f"face-crop map: {len(faces)} of {total} {split} faces found ({100 * len(faces) / total:.1f} %); crop "
          f"centre = anchor centre + ({m.shift_x:+.3f}, {m.shift_y:+.3f}) x anchor size, sides ({m.width_scale:.3f}, "
          f"{m.height_scale:.3f}) x anchor; work side {work_side} px")
    return FaceCropping(box_to_crop, work_side, box_to_anchor=box_to_anchor)


def look_maps(main: BoxToCrop) -> tuple[BoxToCrop, ...]:
    """The further looks of a face: `main` shifted by each of `LOOK_SHIFTS` (fractions of the face box's width
    and height)."""
    return tuple(replace(main, shift_x=main.shift_x + dx, shift_y=main.shift_y + dy) for dx, dy in LOOK_SHIFTS)


def crop_training_face(face: TrainingFace, size: int, cropping: FaceCropping) -> tuple[FaceInput, np.ndarray]:
    """(the detector inputs detect.py makes from the face box, the annotated points in its main crop at 128 px)."""
    made = face_input(read_photo(face.record.path, upright=False), face.face_box, size, cropping, face.anchor)
    return made, points_to_crop(face.record.points_xy, made.seen_box, EVAL_CROP_SIZE)


def detect_training_faces(model: torch.nn.Module, faces: list[TrainingFace], size: int, cropping: FaceCropping,
                          device: torch.device, workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((N, K, 2) detected points of the main crops, (N, M * K, 2) those of all M looks (`look_points`), (N, 5, 2)
    annotated points) of the found faces, in the main crops' pixels at the 128-px scale."""
    detected, looks, annotated, batch = [], [], [], []

    def detect_batch() -> None:
        points = detect_crops(model, [made.crop for made in batch], device)  # (B, K, 2) crop pixels
        detected.append(to_eval_scale(points, size))
        looks.append(look_points(model, batch, points, size, device))
        batch.clear()

    for made, points in ordered_map(partial(crop_training_face, size=size, cropping=cropping), faces, workers):
        batch.append(made)
        annotated.append(points)
        if len(batch) == 256:  # a bounded number of crops in memory
            detect_batch()
    if batch:
        detect_batch()
    return np.concatenate(detected), np.concatenate(looks), np.stack(annotated).astype(np.float64)


def check_enough_faces(found: int, k: int, looks: int, force: bool) -> None:
    """Refuse, in one line, fewer than `FACES_PER_INPUT` faces per input of the larger ridge map (x and y of K
    points for each of `looks` looks), unless `force`."""
    inputs, looks_inputs = 2 * k, 2 * k * looks
    if found < FACES_PER_INPUT * looks_inputs and not force:
        raise UserError(f"{found} faces found: too few to fit the named-point maps ({FACES_PER_INPUT} faces per input "
                        f"need {FACES_PER_INPUT * inputs} for the {inputs} inputs of K={k} points and "
                        f"{FACES_PER_INPUT * looks_inputs} for the {looks_inputs} of {looks} looks); use more faces "
                        "(a larger --limit), or --force for a smoke run")


def fit_named_points(detected: np.ndarray, annotated: np.ndarray, looks: int = 1) -> RidgeModel:
    """The ridge map from the detected points (K per look) to the five annotated ones; prints its training NME."""
    regressor = fit_point_regressor(detected, annotated, reg=REG)
    predicted = apply_point_regressor(regressor, detected)  # (N, 5, 2)
    errors = normalised_point_errors(predicted, annotated, interocular_distance(annotated))  # (N, 5)
    source = f"K={detected.shape[1] // looks} points" + (f" of {looks} looks" if looks > 1 else "")
    print(f"named points: ridge (reg {REG:g}) from {source} to {', '.join(LANDMARK_NAMES)} on {len(detected)} faces; "
          f"training NME {100 * errors.mean():.2f} % of the inter-ocular distance")
    return regressor


def shipped_checkpoint(ckpt: dict, source: Path, cropping: FaceCropping, regressor: RidgeModel, split: str,
                       found: int, total: int) -> dict:
    """The detector-only checkpoint dict (docs/checkpoints.md, "The shipped model")."""
    fitted_on = f"{split} photos, {found} faces found, face-box crops"
    return {
        "format": FORMAT, "config": ckpt["config"], "networks": DETECTOR_ONLY, "step": ckpt["step"],
        "model": {k: v.detach().cpu().clone() for k, v in ckpt["model"].items() if k.startswith("detector.")},
        "git_sha": ckpt.get("git_sha", "unknown"), "export_git_sha": git_sha(),
        "exported_from": checkpoint_identity(source),
        "named_points": {"regressor": regressor.to_dict(), "names": list(LANDMARK_NAMES), "reg": REG,
                         "fitted_on": fitted_on},
        "face_crop": {**cropping.to_dict(), "fitted_on": fitted_on,
                      "faces_found": [found, total]},
    }


def expected_photos(data_root: Path, split: str) -> list[tuple[dict, Photo]]:
    """The photos of the .expected.json: fixed synthetic faces, and the first mtfl-val photos with MTFL data."""
    photos = []
    for seed in SYNTHETIC_SEEDS:
        image_bgr, _ = render_face(np.random.default_rng(list(seed)))
        image_rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        photos.append(({"source": "synthetic", "seed": list(seed)}, Photo.of(image_rgb)))
    if SPLIT_LAYOUTS.get(split) == "mtfl":
        for record in load_records("mtfl-val", data_root)[:MTFL_EXPECTED]:
            photos.append(({"source": "mtfl-val", "name": record.name}, read_photo(record.path, upright=False)))
    return photos


def expected_detections(out: Path, data_root: Path, split: str, device: torch.device) -> dict:
    """What the written file gives on `expected_photos` through detect.py's pipeline, in stored pixels."""
    model, model_cfg, ckpt = load_model(out, device)  # the file as written: load_model must take it
    size = int(ckpt["config"]["data"]["image_size"])
    cropping = FaceCropping.from_dict(ckpt["face_crop"], str(out), model_cfg.num_points)
    regressor = read_named_points(ckpt, model_cfg.num_points, str(out))
    images = []
    for entry, photo in expected_photos(data_root, split):
        found = locate_faces(model, photo_face_inputs(photo, size, cropping), size, device, regressor,
                             looks_regressor=cropping.looks_regressor)
        entry["faces"] = [{"box": list(face.face_box), "points": face.points_xy.tolist(),
                           "named": dict(zip(LANDMARK_NAMES, face.named_xy.tolist()))} for face in found]
        images.append(entry)
    return {"model": out.name, "model_sha256": file_sha256(out), "units": "stored-image pixels, pixel centres",
            "tolerance_px": 1e-3, "images": images}


def expected_json(expected: dict) -> str:
    """JSON text with each innermost list of numbers (a point, a box) on one line."""
    text = json.dumps(expected, indent=1)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, epilog=OUTPUT_RULE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a trained checkpoint or run folder (its last.pt)")
    p.add_argument("--data-root", type=Path, required=True, help="the data set's root in its own layout (MTFL: the "
                   "folder with training.txt)")
    p.add_argument("--out", type=Path, required=True, help="the file to write, e.g. checkpoints/mtfl_k10.pt; "
                   "<out without .pt>.expected.json is written beside it. Never a training checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace --out and its .expected.json if they exist "
                   "(e.g. re-exporting checkpoints/mtfl_k10.pt, also onto itself); without it they are refused")
    p.add_argument("--force", action="store_true", help=f"fit on fewer than {FACES_PER_INPUT} faces per regressor "
                   "input (a smoke run; the named points come out poor)")
    p.add_argument("--split", default="mtfl-train", choices=[s for s in EVAL_SPLITS if s != "folder"],
                   help="the annotated split whose faces the map and regressor are fitted on (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces of the split (quicker)")
    p.add_argument("--faces", choices=FINDERS, default=DEFAULT_FINDER, help="the face finder whose boxes the face-crop "
                   "map and regressors are fitted on; detect.py then uses it (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="threads reading photos and finding faces (default 2)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ... (default: auto)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    """Fit, write and check; returns the written file. User mistakes raise UserError."""
    if args.out.suffix != ".pt":
        raise UserError(f"--out {args.out}: expected a file name ending in .pt (e.g. checkpoints/mtfl_k10.pt)")
    for flag, value, minimum in (("--limit", args.limit, 1), ("--workers", args.workers, 0)):
        if value is not None and value < minimum:
            raise UserError(f"{flag} {value}: expected >= {minimum}")
    source = find_checkpoint(args.checkpoint)
    expected_path = args.out.with_suffix(".expected.json")
    for path in (args.out, expected_path):
        check_output(path, "--out", [("--checkpoint", source)], args.overwrite)
    check_writable_folder(args.out.parent, "the exported model (--out)")
    try:
        records = load_records(args.split, args.data_root)[:args.limit]
    except UserError as exc:
        raise UserError(f"{exc} (--split {args.split}; a CelebA/MAFL-layout or synthetic folder takes --split "
                        "mafl-train, aflw_release-2 --split aflw-train)") from exc
    if records[0].points_xy is None:
        raise UserError(f"{args.data_root} ({args.split}): no annotated points; expected an annotated split")
    device = resolve_device(args.device)
    model, model_cfg, ckpt = load_model(source, device)
    size, tight = int(ckpt["config"]["data"]["image_size"]), int(ckpt["config"]["data"]["tight"])
    print(f"exporting {checkpoint_identity(source)} (step {ckpt['step']}, K={model_cfg.num_points}, {size} px crops, "
          f"margin {tight}) with {len(records)} {args.split} faces of {args.data_root}")
    start = time.perf_counter()
    quiet_header_reads()
    found = [f for f in ordered_map(partial(find_training_face, tight=tight, finder=args.faces), records,
                                    args.workers) if f]
    if len(found) < MIN_FACES:
        raise UserError(f"{args.data_root} ({args.split}): the face finder found {len(found)} of {len(records)} "
                        f"annotated faces; need at least {MIN_FACES} to fit the face-crop map and the regressor")
    check_enough_faces(len(found), model_cfg.num_points, 1 + len(LOOK_SHIFTS), args.force)
    cropping = fit_cropping(found, len(records), args.split)
    cropping = replace(cropping, looks=look_maps(cropping.box_to_crop), finder=args.faces)
    detected, looks, annotated = detect_training_faces(model, found, size, cropping, device, args.workers)
    regressor = fit_named_points(detected, annotated)
    cropping = replace(cropping, looks_regressor=fit_named_points(looks, annotated, 1 + len(cropping.looks)))
    shipped = shipped_checkpoint(ckpt, source, cropping, regressor, args.split, len(found), len(records))
    try:
        atomic_torch_save(shipped, args.out)
        expected = expected_detections(args.out, args.data_root, args.split, device)
        atomic_write(expected_path, lambda f: f.write(expected_json(expected).encode()))
    except OSError as exc:
        raise UserError(f"{exc.filename or args.out}: cannot write ({os_reason(exc)})") from None
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, detector only) and {expected_path} "
          f"({sum(len(i['faces']) for i in expected['images'])} faces of {len(expected['images'])} photos) "
          f"in {time.perf_counter() - start:.0f} s")
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return exit_code_of(run, args)
    except KeyboardInterrupt:  # the writes are atomic: --out is the old file or the new one, whole
        print(f"\ninterrupted (Ctrl-C): {args.out} and its .expected.json are each as they were or whole",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
