"""The checkpoint format, written and read here only: atomic writes, retention, the run counters.

A checkpoint is one file holding everything a run needs to continue exactly: the resolved config,
both networks (detector and generator, incremental buffers included), both optimisers and schedulers,
the step, the data-order position, RNG states, a fingerprint of the training data and the git SHA
(docs/checkpoints.md lists the keys).
It loads with `torch.load(weights_only=True)`: nothing in it is an arbitrary pickled object.
`model.load_model` builds a model from one.

The output rule of every script (`OUTPUT_RULE`, checked by `check_output` before the work) lives here too,
since its strictest part guards training checkpoints.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import UserError
from utils.files import atomic_write, update_with_file

FORMAT = "inter-intra-landmarks/1"
STEP_FILE = re.compile(r"step_(\d+)\.pt$")
DETECTOR_ONLY = "detector"  # the "networks" entry of a checkpoint that holds the detector's weights alone
TRAINING_STATE_KEYS = ("optim_fan", "optim_gen", "sched_fan", "sched_gen", "step", "data_pass", "batch_in_pass",
                       "best_val_nme", "rng")  # what --resume restores besides the weights
OUTPUT_RULE = ("Outputs: no file that exists is replaced unless --overwrite is given, an output that is also an\n"
               "input of the same command only with --overwrite (the write is atomic), and a training checkpoint\n"
               "(a file with optimiser state) never: only train.py writes those.")  # the --help epilog of every tool
# also written by training_state, but absent from checkpoints older than it (they resume at their own data.root):
OPTIONAL_KEYS = ("data_fingerprint",)


@dataclass
class RunState:
    """The counters of a training run that a checkpoint saves: steps done, the data-order position (pass
    over the data set, batches of it consumed) and the best validation NME so far."""

    step: int = 0
    data_pass: int = 0
    batch_in_pass: int = 0
    best_val_nme: float = math.inf


def data_fingerprint(records: Sequence[Any]) -> str:
    """SHA-256 (64 hex digits) of a training set's records in order: each one's name and annotated points.

    records: `datasets.records.FaceRecord`s (anything with `.name` and `.points_xy`, (5, 2) or None). Two
    copies of a data set in different folders have the same fingerprint; another image list, order or
    annotation gives another. `--resume` with a new data.root compares it with the checkpoint's.
    """
    digest = hashlib.sha256()
    for record in records:
        name = record.name.encode()
        digest.update(len(name).to_bytes(4, "little") + name)
        if record.points_xy is None:
            digest.update(b"\x00")
        else:
            digest.update(b"\x01" + np.ascontiguousarray(record.points_xy, dtype="<f4").tobytes())
    return digest.hexdigest()


def training_state(config: dict, model: torch.nn.Module, optimizers: list, schedulers: list, state: RunState,
                   iters_per_epoch: int, fingerprint: str) -> dict:
    """The checkpoint dict of a training run: `config` (the resolved config as a plain dict), the model's
    weights, both optimisers and schedulers (detector first), the run counters, the training data's
    `data_fingerprint`, git SHA and torch RNG."""
    return {"format": FORMAT, "config": config, "model": model.state_dict(), "data_fingerprint": fingerprint,
            "optim_fan": optimizers[0].state_dict(), "optim_gen": optimizers[1].state_dict(),
            "sched_fan": schedulers[0].state_dict(), "sched_gen": schedulers[1].state_dict(),
            "step": state.step, "epoch": state.step // iters_per_epoch, "data_pass": state.data_pass,
            "batch_in_pass": state.batch_in_pass, "best_val_nme": state.best_val_nme, "git_sha": git_sha(),
            "rng": {"torch": torch.get_rng_state()}}


def restore_training_state(ckpt: dict, model: torch.nn.Module, optimizers: list, schedulers: list) -> RunState:
    """Load a checkpoint's weights, optimisers, schedulers and torch RNG (the inverse of `training_state`)."""
    model.load_state_dict(ckpt["model"])
    for obj, key in ((optimizers[0], "optim_fan"), (optimizers[1], "optim_gen"),
                     (schedulers[0], "sched_fan"), (schedulers[1], "sched_gen")):
        obj.load_state_dict(ckpt[key])
    torch.set_rng_state(ckpt["rng"]["torch"])
    return RunState(ckpt["step"], ckpt["data_pass"], ckpt["batch_in_pass"], ckpt["best_val_nme"])


def git_sha(repo: Path | None = None) -> str:
    """The commit of the code that runs ('unknown' outside a git checkout), '+dirty' if modified."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through `atomic_write`: never a truncated checkpoint, whenever a crash comes."""
    atomic_write(path, lambda f: torch.save(obj, f))


def link_last_checkpoint(path: Path) -> None:
    """Make last.pt a second name of the step file `path` (no second write), atomically."""
    tmp = path.with_name(".last.pt.link")
    tmp.unlink(missing_ok=True)
    os.link(path, tmp)
    os.replace(tmp, path.with_name("last.pt"))


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds a checkpoint (last.pt or a step file)."""
    return (run_dir / "last.pt").exists() or bool(step_checkpoints(run_dir))


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The step_XXXXXXXX.pt files of a run folder, oldest first."""
    return sorted(run_dir.glob("step_*.pt"), key=lambda p: int(STEP_FILE.search(p.name).group(1)))


def prune_step_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step_XXXXXXXX.pt files (last.pt and best.pt are separate)."""
    steps = step_checkpoints(run_dir)
    for old in steps[: max(len(steps) - keep, 0)]:
        old.unlink(missing_ok=True)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest one of a run folder (last.pt, else the highest step file)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "last.pt").is_file():
            return path / "last.pt"
        steps = step_checkpoints(path)
        if steps:
            return steps[-1]
        raise UserError(f"{path}: no checkpoint in this run folder (expected last.pt or step_*.pt)")
    raise UserError(f"{path}: no such checkpoint file or run folder")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict of `path` (a file or a run folder), checked to be one of ours."""
    file = find_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        raise UserError(f"{file}: cannot read checkpoint ({reason}){readable_neighbour_hint(file)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{file}: not a checkpoint of this repository (expected format {FORMAT!r}); a reference "
                        "model_N.fan.pth converts with python -m utils.import_reference --fan model_N.fan.pth "
                        "--gen model_N.gen.pth --core fan_109.pth --out ours.pt")
    ckpt["path"] = str(file)
    return ckpt


def is_detector_only(ckpt: dict[str, Any]) -> bool:
    """Whether a checkpoint holds only the detector (`detector.*` weights, no generator): a shipped model."""
    return ckpt.get("networks") == DETECTOR_ONLY


def readable_neighbour_hint(file: Path) -> str:
    """'; <step file> beside it reads: ...' naming the newest step file of `file`'s folder that loads (not
    `file` itself, nor its other name: last.pt is a hard link to a step file), or '' when there is none."""
    for step_file in reversed(step_checkpoints(file.parent)):
        if step_file.exists() and not os.path.samefile(step_file, file):
            try:
                torch.load(step_file, map_location="cpu", weights_only=True)
            except Exception:
                continue
            return (f"; {step_file} beside it reads: pass it instead, or continue training from it with "
                    f"python train.py --resume {step_file}")
    return ""


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint that `--resume` can continue: one with optimiser state, not an imported model."""
    ckpt = read_checkpoint(path)
    missing = [key for key in TRAINING_STATE_KEYS if key not in ckpt]
    if missing:
        raise UserError(f"{ckpt['path']}: no training state to resume (no {', '.join(missing[:2])}, ...; an imported "
                        f"model?); start a new run from its weights with train.init_from={ckpt['path']}")
    return ckpt


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a file with a training run's optimiser state (what `--resume` continues).

    Reads the pickle of torch's zip archive only, not the tensors: a checkpoint of `training_state` names the
    key 'optim_fan' there. Any other file (a shipped or imported model, JSON, a folder, nothing) gives False.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.rpartition("/")[2] == "data.pkl"]
            return any(b"optim_fan" in archive.read(name) for name in pickles)
    except (OSError, zipfile.BadZipFile):
        return False


def check_output(path: str | Path, flag: str, inputs: Sequence[tuple[str, str | Path | None]] = (),
                 overwrite: bool = False) -> None:
    """`OUTPUT_RULE` for one output file, before the work: a one-line UserError if `path` (given as `flag`,
    e.g. '--out') is a training checkpoint, or, unless `overwrite`, is one of the command's `inputs` ((flag,
    path) pairs; hard links count) or exists at all. A path that does not exist yet always passes."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise UserError(f"{flag} {path}: a folder; expected a file name")
    if is_training_checkpoint(path):
        raise UserError(f"{flag} {path}: a training checkpoint (it holds optimiser state); only train.py writes over "
                        f"one: give another {flag}")
    if overwrite:
        return
    for name, given in inputs:
        if given is not None and Path(given).is_file() and os.path.samefile(given, path):
            raise UserError(f"{flag} {path} is also this command's input ({name} {given}); give another {flag}, or "
                            "--overwrite to replace it (atomically)")
    raise UserError(f"{flag} {path} already exists; give another {flag}, or --overwrite to replace it")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content, 64 hex digits."""
    return update_with_file(hashlib.sha256(), path).hexdigest()


def checkpoint_identity(path: str | Path, sha256: str | None = None) -> str:
    """'<path> sha256:<first 12 hex>' of a checkpoint file, to record where detections came from.

    sha256: the file's `file_sha256` when the caller has it already (it is computed otherwise).
    """
    file = find_checkpoint(path)
    return f"{file} sha256:{(sha256 or file_sha256(file))[:12]}"
