"""What `train.py --resume CHECKPOINT [overrides]` does with its overrides and the files around it.

- Every override that changes training is applied or refused in one line naming the key. The learning
  rates, Adam's betas and weight decay, `train.step_size` and `train.gamma` are applied to the restored
  optimisers and schedules (`apply_optimiser_overrides`: the decays already taken stay taken); keys read
  each step (`train.epochs`, `train.batch_size`, ...) apply by themselves; model.* and data.* keys are
  checked in run_folder.py; `RESUME_REFUSED` keys are refused.
- `log.run_dir=NEW` branches the run into NEW (`branch_log`): OLD is left untouched.
- Resuming in place from a step file older than the run's newest checkpoint would overwrite the newer
  files (`check_no_newer_checkpoints`): refused unless `--overwrite`.
- A run whose step has reached the total (after the overrides) is done: `finished_line`, nothing written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from utils.checkpoint import STEP_FILE, RunState, restore_training_state, step_checkpoints
from utils.config import to_dict
from utils.errors import UserError
from utils.files import atomic_write
from utils.run_config import RunConfig
from utils.training.run_log import drop_records_after

# keys a resumed run would silently ignore, with what to do instead
RESUME_REFUSED = {
    "log.out_dir": "a resumed run stays in its folder; branch it into a new one with log.run_dir=NEW",
    "log.name": "a resumed run stays in its folder; branch it into a new one with log.run_dir=NEW",
    "train.init_from": "a resumed run continues from its checkpoint; start a new run with --config to warm-start",
}
OPTIMISER_KEYS = ("lr_fan", "lr_gen", "betas", "weight_decay", "step_size", "gamma")  # train.*, in the restored state


def check_resume_overrides(saved: dict[str, Any], overrides: dict[str, Any], checkpoint: str) -> None:
    """Refuse, in one line, an override of a `RESUME_REFUSED` key that differs from the checkpoint's config."""
    for name, advice in RESUME_REFUSED.items():
        section, key = name.split(".")
        given = overrides.get(section, {})
        if isinstance(given, dict) and key in given and given[key] != saved.get(section, {}).get(key):
            raise UserError(f"{name}={given[key]}: not applied when resuming {checkpoint}: {advice}")


def same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def check_no_newer_checkpoints(ckpt: dict, overwrite: bool) -> None:
    """Resuming in place from `ckpt` rewrites its folder's checkpoints, best.pt and log.jsonl from its step on:
    refuse, in one line, when the folder holds a checkpoint of a later step, unless `overwrite`."""
    path, step = Path(ckpt["path"]), ckpt["step"]
    newer = [p.name for p in step_checkpoints(path.parent) if int(STEP_FILE.search(p.name).group(1)) > step]
    last = path.parent / "last.pt"
    if not newer and last.is_file() and not last.samefile(path) and saved_step(last) > step:
        newer = [last.name]
    if newer and not overwrite:
        raise UserError(f"{path} is step {step}, but {path.parent} holds later checkpoints ({', '.join(newer)}) that "
                        f"resuming there would overwrite; branch with log.run_dir=NEW_FOLDER, or give --overwrite to "
                        f"continue in {path.parent} from step {step}")


def saved_step(path: Path) -> int:
    """The step of a checkpoint file, -1 if it does not read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:
        return -1


def finished_line(cfg: RunConfig, ckpt: dict | None) -> str | None:
    """The line a resumed run that has nothing left to do ends with (None if it has steps to go)."""
    if ckpt is None or ckpt["step"] < cfg.train.total_steps:
        return None
    return (f"already done at step {ckpt['step']} of {cfg.train.total_steps} ({ckpt['path']}); nothing written. "
            "Train longer with train.epochs=N or train.max_steps=N")


def restore_run(ckpt: dict, cfg: RunConfig, model: torch.nn.Module, optimizers: list, schedulers: list,
                announce: bool) -> RunState:
    """`restore_training_state`, then the optimiser and schedule overrides (`apply_optimiser_overrides`); with
    `announce`, one line naming those applied."""
    state = restore_training_state(ckpt, model, optimizers, schedulers)
    applied = apply_optimiser_overrides(cfg, ckpt["config"].get("train", {}), optimizers, schedulers)
    if announce and applied:
        rates = " and ".join(f"{group['lr']:.3g}" for opt in optimizers for group in opt.param_groups)
        print(f"resume: applied {', '.join(applied)} (learning rates now {rates}, detector first)")
    return state


def apply_optimiser_overrides(cfg: RunConfig, saved: dict[str, Any], optimizers: list, schedulers: list) -> list[str]:
    """Set the `OPTIMISER_KEYS` of `cfg.train` that differ from the checkpoint's (`saved`, its train section) in
    the restored Adams (detector first) and StepLRs. A learning rate keeps the decays taken so far: the new base
    rate x gamma^(decays), with the new gamma. Returns 'train.key=value' of each key applied."""
    train = to_dict(cfg)["train"]
    changed = [key for key in OPTIMISER_KEYS if key in saved and train[key] != saved[key]]
    if not changed:
        return []
    for optimizer, scheduler, base_lr in zip(optimizers, schedulers, (cfg.train.lr_fan, cfg.train.lr_gen)):
        for group, old_base in zip(optimizer.param_groups, scheduler.base_lrs):
            factor = group["lr"] / old_base  # gamma^decays of the old schedule
            decays = round(math.log(factor) / math.log(saved["gamma"])) if saved["gamma"] != 1 and factor > 0 else 0
            group.update(lr=base_lr * cfg.train.gamma ** decays, initial_lr=base_lr, betas=cfg.train.betas,
                         weight_decay=cfg.train.weight_decay)
        scheduler.base_lrs = [base_lr] * len(optimizer.param_groups)
        scheduler.step_size, scheduler.gamma = cfg.train.step_size, cfg.train.gamma
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return [f"train.{key}={train[key]}" for key in changed]


def branch_log(old_dir: Path, new_dir: Path, step: int) -> None:
    """Start a branch's log.jsonl in `new_dir` with the records of `old_dir`'s up to `step` (OLD is only read)."""
    old = old_dir / "log.jsonl"
    if old.is_file():
        data = old.read_bytes()
        atomic_write(new_dir / "log.jsonl", lambda f: f.write(data))
        drop_records_after(new_dir / "log.jsonl", step)
