"""The forward regressor of an evaluation, saved as JSON (`eval_regressor.py --save-regressor`) or attached to the
checkpoint whose detections it was fitted on as its `named_points` (`--attach-to`), which detect.py then uses to
write the five named points.

The regressor maps a face's K detected points to its five annotated ones, both (x, y) in 128-px crop pixels of the
crops the detections were made on (landmark-driven crops for extract_data.py's files): `utils.metrics.
fit_point_regressor` and `apply_point_regressor`, stored with `RidgeModel.to_dict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from utils.checkpoint import atomic_torch_save, file_sha256, read_checkpoint
from utils.errors import UserError
from utils.evaluation.detections import Detections
from utils.files import atomic_write
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import fit_point_regressor

REGRESSOR_FORMAT = "inter-intra-landmarks/regressor/1"


def regressor_record(train: Detections, reg: float, bias: bool, solver: str) -> dict:
    """The forward regressor fitted on every face of `train` (as the main row of the evaluation is), with what
    it needs to be used right: K, the names of its outputs, the checkpoint and crops of its detections."""
    model = fit_point_regressor(train.detected_xy_px, train.annotated_xy_px, reg, bias, solver)
    return {"format": REGRESSOR_FORMAT, "regressor": model.to_dict(), "k": train.k, "names": list(LANDMARK_NAMES),
            "reg": reg, "bias": bias, "solver": solver, "split": train.split, "images": train.n,
            "checkpoint": train.checkpoint, "checkpoint_sha256": train.settings.get("checkpoint_sha256"),
            "tight": train.settings.get("tight"), "image_size": train.settings.get("image_size"),
            "units": "128-px crop pixels of the detections' crops"}


def save_regressor(path: Path, record: dict) -> None:
    """Write `record` as JSON, atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))


def check_attachable(checkpoint: Path, train: Detections) -> str:
    """Refuse, in one line, a checkpoint other than the one the detections were made with (by file SHA-256) or
    with another K; returns its SHA-256."""
    if not checkpoint.is_file():
        raise UserError(f"--attach-to {checkpoint}: no such checkpoint file (give the file itself, e.g. RUN/last.pt)")
    wanted = train.settings.get("checkpoint_sha256")
    if not wanted:
        raise UserError(f"{train.path}: its settings hold no checkpoint_sha256 (an older extract_data.py), so the "
                        f"checkpoint it came from cannot be checked; extract again to attach to {checkpoint}")
    sha256 = file_sha256(checkpoint)
    if sha256 != wanted:
        raise UserError(f"--attach-to {checkpoint}: its content (sha256:{sha256[:12]}) is not the checkpoint the "
                        f"detections were made with (sha256:{wanted[:12]}, {train.checkpoint}); attach the "
                        "regressor to that file")
    k = read_checkpoint(checkpoint)["config"]["model"]["num_points"]
    if k != train.k:
        raise UserError(f"--attach-to {checkpoint}: K={k} points but the detections have K={train.k}")
    return sha256


def attach_regressor(checkpoint: Path, record: dict) -> None:
    """Add `record`'s regressor to the checkpoint file as its `named_points`, atomically (the file is
    replaced: its SHA-256 changes, and a hard link such as a run's last.pt keeps pointing at the old one)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["named_points"] = {"regressor": record["regressor"], "names": record["names"], "reg": record["reg"],
                            "bias": record["bias"], "fitted_on": f"{record['split']} landmark-driven crops",
                            "images": record["images"], "tight": record["tight"], "image_size": record["image_size"]}
    atomic_torch_save(ckpt, checkpoint)
