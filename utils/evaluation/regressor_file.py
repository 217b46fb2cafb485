"""The forward regressor of an evaluation, saved as JSON (`eval_regressor.py --save-regressor`) or attached to the
checkpoint whose detections it was fitted on as its `named_points` (`--attach-to`), which detect.py then uses to
write the five named points.

The regressor maps a face's K detected points to its five annotated ones, both (x, y) in 128-px crop pixels of the
crops the detections were made on (landmark-driven crops for extract_data.py's files): `utils.metrics.
fit_point_regressor` and `apply_point_regressor`, stored with `RidgeModel.to_dict`.

`--attach-to` reads the checkpoint once, checks those bytes (SHA-256, K) and writes them back with the regressor
added, atomically, while it holds the run folder's lock (when the folder is a run folder, i.e. has RUN/.lock): a
training run cannot write a newer checkpoint under it in between.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.checkpoint import FORMAT, atomic_torch_save
from utils.errors import UserError
from utils.evaluation.detections import Detections
from utils.files import atomic_write, os_reason
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import fit_point_regressor
from utils.training.run_lock import LOCK_FILE, RunFolderLock, lock_run_folder

REGRESSOR_FORMAT = "inter-intra-landmarks/regressor/1"
FACES_PER_INPUT = 5  # a kept regressor is fitted on at least this many faces per input (x and y of K points)


@dataclass
class AttachTarget:
    """The checkpoint that `--attach-to` adds the regressor to: its path, the checkpoint dict read from the
    bytes that were checked, and the run folder's lock held until the write (None when the file's folder is
    not a run folder)."""

    path: Path
    ckpt: dict
    lock: RunFolderLock | None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


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


def check_enough_faces(train: Detections, flags: str, force: bool) -> None:
    """Refuse, in one line, to keep (`flags`: --save-regressor, --attach-to) a regressor fitted on fewer than
    `FACES_PER_INPUT` faces per input, unless `force`. The few-shot table's fits are not kept and not checked."""
    inputs = 2 * train.k
    if train.n < FACES_PER_INPUT * inputs and not force:
        raise UserError(f"{flags}: {train.path} has {train.n} faces, too few for a regressor to keep: its {inputs} "
                        f"inputs (x and y of K={train.k} points) need at least {FACES_PER_INPUT * inputs} "
                        f"({FACES_PER_INPUT} per input); extract more faces, or give --force")


def check_attachable(checkpoint: Path, train: Detections) -> AttachTarget:
    """Lock the checkpoint's run folder, read the file once and refuse, in one line, a checkpoint other than the
    one the detections were made with (by SHA-256) or with another K. The lock is held by the returned target
    (released if a check fails)."""
    if not checkpoint.is_file():
        raise UserError(f"--attach-to {checkpoint}: no such checkpoint file (give the file itself, e.g. RUN/last.pt)")
    wanted = train.settings.get("checkpoint_sha256")
    if not wanted:
        raise UserError(f"{train.path}: its settings hold no checkpoint_sha256 (an older extract_data.py), so the "
                        f"checkpoint it came from cannot be checked; extract again to attach to {checkpoint}")
    run_dir = checkpoint.parent
    lock = lock_run_folder(run_dir, "attach the regressor after it ends (to the file the detections came from)") \
        if (run_dir / LOCK_FILE).exists() else None
    try:
        try:
            data = checkpoint.read_bytes()
        except OSError as exc:
            raise UserError(f"--attach-to {checkpoint}: cannot read ({os_reason(exc)})") from None
        target = AttachTarget(checkpoint, check_checkpoint_bytes(checkpoint, data, wanted, train), lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return target


def check_checkpoint_bytes(checkpoint: Path, data: bytes, wanted: str, train: Detections) -> dict:
    """The checkpoint dict of `data` (the bytes of `checkpoint`), if their SHA-256 is `wanted` and their K the
    detections'; a one-line UserError otherwise."""
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != wanted:
        raise UserError(f"--attach-to {checkpoint}: its content (sha256:{sha256[:12]}) is not the checkpoint the "
                        f"detections were made with (sha256:{wanted[:12]}, {train.checkpoint}); attach the "
                        "regressor to that file")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        k = ckpt["config"]["model"]["num_points"] if ckpt.get("format") == FORMAT else None
    except Exception:
        k = None
    if k is None:
        raise UserError(f"--attach-to {checkpoint}: not a checkpoint of this repository with a config "
                        f"(expected format {FORMAT!r})")
    if k != train.k:
        raise UserError(f"--attach-to {checkpoint}: K={k} points but the detections have K={train.k}")
    return ckpt


def attach_regressor(target: AttachTarget, record: dict) -> None:
    """Add `record`'s regressor to the checked checkpoint as its `named_points` and write it, atomically (the
    file is replaced: its SHA-256 changes, and a hard link such as a run's last.pt keeps pointing at the old
    one)."""
    ckpt = target.ckpt
    ckpt["named_points"] = {"regressor": record["regressor"], "names": record["names"], "reg": record["reg"],
                            "bias": record["bias"], "fitted_on": f"{record['split']} landmark-driven crops",
                            "images": record["images"], "tight": record["tight"], "image_size": record["image_size"]}
    atomic_torch_save(ckpt, target.path)
