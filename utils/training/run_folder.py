"""Where a run lives and what it starts from: the config of a new or resumed run, its checks, its folder
(locked by one run at a time, utils/training/run_lock.py), and the line a run ends with when it cannot write."""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch.distributed as dist

from utils.checkpoint import (data_fingerprint, find_checkpoint, has_checkpoint, read_training_checkpoint,
                              step_checkpoints)
from utils.config import build, check_values, load_config, merge, parse_overrides, to_yaml
from utils.dataset_registry import TRAINING_SETS
from utils.errors import UserError
from utils.files import atomic_write, check_writable_folder, os_reason
from utils.run_config import RunConfig, check_image_size
from utils.training.resume import branch_log, check_no_newer_checkpoints, check_resume_overrides, same_folder
from utils.training.run_lock import RunFolderLock, check_not_in_use, lock_run_folder
from utils.training.run_log import RunLog
from utils.training.runtime import Dist

# data.* keys a resumed run may change: they cannot change what it trains on (data.root only to a copy of
# the same data, which `check_same_data` verifies against the checkpoint's fingerprint)
RESUMABLE_DATA_KEYS = ("num_workers", "root")


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, dict | None]:
    """The run's config and the checkpoint it resumes (None for a new run): from --config and overrides,
    or from the checkpoint when resuming (overrides still apply, model.* ones only if unchanged; resume.py).
    A resumed run's log.run_dir is its checkpoint's folder unless an override branches it into another."""
    if args.resume:
        if args.config:
            raise UserError(f"--resume {args.resume} takes its config from the checkpoint; drop --config {args.config} "
                            "(overrides such as train.epochs=40 still apply)")
        if is_run_dir_without_checkpoint(Path(args.resume)):
            raise UserError(f"{args.resume}: this run stopped before its first checkpoint, so there is nothing to "
                            f"resume; start it again with --config FILE log.run_dir={args.resume}")
        ckpt = read_training_checkpoint(args.resume)
        overrides = parse_overrides(args.overrides)
        check_model_unchanged(ckpt["config"].get("model", {}), overrides.get("model", {}), ckpt["path"])
        check_data_unchanged(ckpt["config"].get("data", {}), overrides.get("data", {}), ckpt["path"])
        check_resume_overrides(ckpt["config"], overrides, ckpt["path"])
        run_dir = overrides.get("log", {}).get("run_dir") or str(Path(ckpt["path"]).parent)
        cfg = build(RunConfig, merge(merge(ckpt["config"], overrides), {"log": {"run_dir": str(run_dir)}}))
        if same_folder(cfg.log.run_dir, Path(ckpt["path"]).parent):
            check_not_in_use(Path(ckpt["path"]).parent)  # a running run writes later checkpoints: say it runs
            check_no_newer_checkpoints(ckpt, args.overwrite)
        return cfg, ckpt
    if not args.config and not args.print_config:
        raise UserError("give --config configs/<name>.yaml (or --resume RUN_FOLDER)")
    cfg = load_config(RunConfig, args.config, args.overrides)
    if not cfg.log.name and args.config:
        cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, name=Path(args.config).stem))
    if cfg.model.fan_init != "scratch" and not cfg.model.fan_pretrained and not args.print_config:
        warnings.warn(f"model.fan_init={cfg.model.fan_init} needs model.fan_pretrained=/path/to/fan_109.pth; "
                      "training the FAN from scratch instead (expect worse numbers than the paper's)", stacklevel=2)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, fan_init="scratch"))
    return cfg, None


def check_model_unchanged(saved: dict[str, Any], overrides: dict[str, Any], checkpoint: str) -> None:
    """Refuse model.* overrides on resume that differ from the checkpoint's: its weights fix the model."""
    for key, value in overrides.items():
        if key in saved and value != saved[key]:
            raise UserError(f"model.{key}={value}: {checkpoint} was trained with model.{key}={saved[key]}, and a resumed "
                            "run keeps its model; drop the override or start a new run with --config")


def check_data_unchanged(saved: dict[str, Any], overrides: dict[str, Any], checkpoint: str) -> None:
    """Refuse data.* overrides on resume that differ from the checkpoint's, but for `RESUMABLE_DATA_KEYS`:
    the crops, margins and augmentation a run trains on stay those it started with."""
    for key, value in overrides.items():
        if key not in RESUMABLE_DATA_KEYS and key in saved and value != saved[key]:
            raise UserError(f"data.{key}={as_typed(value)}: {checkpoint} was trained with data.{key}="
                            f"{as_typed(saved[key])}, and a resumed run keeps its data; drop the override or start a "
                            "new run with --config")


def as_typed(value: Any) -> str:
    """A config value as it is typed on the command line: true, null, 0.5, celeba."""
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def checked_fingerprint(records: Sequence[Any], ckpt: dict | None, root: str) -> str:
    """The `data_fingerprint` of the training records; a resumed run's must be its checkpoint's (`check_same_data`)."""
    fingerprint = data_fingerprint(records)
    if ckpt is not None:
        check_same_data(ckpt, root, fingerprint)
    return fingerprint


def check_same_data(ckpt: dict, root: str, fingerprint: str) -> None:
    """On resume, refuse training data other than the checkpoint's: a data.root moved to another copy is
    fine when its records (names and annotated points, in order) have the checkpoint's `data_fingerprint`.
    A checkpoint written before fingerprints were stored only resumes at its own data.root."""
    saved_root, saved = ckpt["config"]["data"]["root"], ckpt.get("data_fingerprint")
    if saved is None and root != saved_root:
        raise UserError(f"data.root={root}: {ckpt['path']} does not record which data it was trained on (an older "
                        f"checkpoint), so another data.root cannot be checked; resume with data.root={saved_root}")
    if saved is not None and saved != fingerprint:
        raise UserError(f"data.root={root}: its training images or annotated points differ from those {ckpt['path']} "
                        f"was trained on (data.root={saved_root}); resume on the same data, or start a new run "
                        "with --config")


def check_config(cfg: RunConfig) -> None:
    """Every value in range (one line naming the key, the value and what is allowed), and the rules between keys."""
    check_values(cfg)
    if not cfg.data.root:
        raise UserError("data.root is not set: add data.root=/path/to/dataset on the command line")
    check_image_size(cfg.data.image_size, cfg.model.hourglass_depth, f"data.image_size={cfg.data.image_size}")
    if cfg.loss.separation_weight > 0 and cfg.model.num_points < 2:
        raise UserError("loss.separation_weight > 0 needs model.num_points >= 2: it pushes points apart")
    if cfg.train.batch_size < 2 and cfg.train.objective in ("all", "inter"):
        raise UserError("train.batch_size must be >= 2: the auxiliary subject is another image of the batch")
    v = cfg.validation
    if v.enabled and not (v.fit_split or TRAINING_SETS[cfg.data.dataset].fit_split):
        # refused rather than warned: a run would go for hours without validation and never write best.pt
        raise UserError(f"data.dataset={cfg.data.dataset} has no annotated split to validate on, so the run would "
                        "measure no NME and write no best.pt: add validation.enabled=false, or validate on an "
                        "annotated set with validation.fit_split=mafl-train validation.root=/path/to/celeba")


def check_run_folder_writable(cfg: RunConfig, ckpt: dict | None, d: Dist) -> None:
    """Before the data and the model are built, on rank 0: the run folder (or where it will be made) takes
    files. Leaves nothing behind."""
    if not d.is_main:
        return
    if ckpt is not None:
        check_writable_folder(Path(cfg.log.run_dir), "the resumed run's checkpoints")
    else:
        check_writable_folder(Path(cfg.log.run_dir or cfg.log.out_dir), "the run folder")


def is_run_dir_without_checkpoint(path: Path) -> bool:
    """Whether `path` is a run folder that a run left before its first checkpoint (config.yaml only)."""
    return path.is_dir() and (path / "config.yaml").is_file() and not has_checkpoint(path)


def claim_run_dir(cfg: RunConfig, d: Dist, ckpt: dict | None) -> tuple[Path, RunFolderLock]:
    """The run's folder, locked by rank 0 (`lock_run_folder`) before anything is written in it: the resumed
    checkpoint's folder, log.run_dir (which may be one that a failed start left without a checkpoint, or the
    branch of a resumed run), or a new <out_dir>/<name>-<date>-<time>. Other ranks get the name and a lock that
    holds nothing."""
    if ckpt is not None and same_folder(cfg.log.run_dir, Path(ckpt["path"]).parent):
        run_dir = Path(ckpt["path"]).parent
        return run_dir, lock_run_folder(run_dir) if d.is_main else RunFolderLock(run_dir)
    if cfg.log.run_dir:
        run_dir = Path(cfg.log.run_dir)
        lock = lock_run_folder(run_dir) if d.is_main else RunFolderLock(run_dir)
        if has_checkpoint(run_dir):
            lock.release()
            raise UserError(f"log.run_dir={run_dir} already holds a run; continue it with --resume {run_dir}")
        return run_dir, lock
    stamp = [datetime.now().strftime("%Y%m%d-%H%M%S")]
    if d.enabled:
        dist.broadcast_object_list(stamp, src=0)
    run_dir = Path(cfg.log.out_dir) / f"{cfg.log.name or 'run'}-{stamp[0]}"
    suffix = 1
    while d.is_main:  # mkdir claims the name: two runs started in the same second get two folders
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:
            run_dir = Path(cfg.log.out_dir) / f"{cfg.log.name or 'run'}-{stamp[0]}-{suffix}"
            suffix += 1
        except OSError as exc:
            raise UserError(f"{run_dir}: cannot make the run folder ({os_reason(exc)})") from None
    return run_dir, lock_run_folder(run_dir) if d.is_main else RunFolderLock(run_dir)


def open_run_folder(cfg: RunConfig, d: Dist, ckpt: dict | None, writer_cls: type | None
                    ) -> tuple[Path, RunFolderLock, RunLog]:
    """Claim and lock the run folder, open its log (a resumed run's without the records past its checkpoint)
    and write config.yaml; on rank 0 only, other ranks get the names. The lock is released if this fails."""
    run_dir, lock = claim_run_dir(cfg, d, ckpt)
    if not d.is_main:
        return run_dir, lock, RunLog(None)
    try:
        if ckpt is not None and not same_folder(run_dir, Path(ckpt["path"]).parent):  # a branch: OLD only read
            branch_log(Path(ckpt["path"]).parent, run_dir, ckpt["step"])
        log = RunLog(run_dir / "log.jsonl", resume_step=None if ckpt is None else ckpt["step"], writer_cls=writer_cls)
        atomic_write(run_dir / "config.yaml", lambda f: f.write(to_yaml(cfg).encode()))
    except OSError as exc:
        lock.release()
        raise write_failure(exc, run_dir) from None
    except BaseException:
        lock.release()
        raise
    return run_dir, lock, log


def as_write_failure(exc: OSError, run_dir: Path) -> BaseException:
    """A failed write into the run folder (a full disk, a quota, a folder made read-only) as one line naming
    the file, the OS's reason, the checkpoint that is left and the command that continues from it; any
    other OSError (the training data's, say) as it is."""
    if exc.filename is None or Path(exc.filename).parent != run_dir:
        return exc
    return write_failure(exc, run_dir)


def write_failure(exc: OSError, run_dir: Path) -> UserError:
    """`as_write_failure`'s line for an OSError of a write in `run_dir`."""
    where = exc.filename or run_dir
    if not has_checkpoint(run_dir):
        return UserError(f"{where}: cannot write ({os_reason(exc)}); no checkpoint yet: make room, then start again "
                         f"with --config FILE log.run_dir={run_dir}")
    newest = (step_checkpoints(run_dir) or [find_checkpoint(run_dir)])[-1]
    return UserError(f"{where}: cannot write ({os_reason(exc)}); the checkpoints written before are intact (newest: "
                     f"{newest.name}): make room, then continue with python train.py --resume {run_dir}")
