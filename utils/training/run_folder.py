"""Where a run lives and what it starts from: the config of a new or resumed run, its checks, its folder."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch.distributed as dist

from utils.checkpoint import has_checkpoint, read_training_checkpoint
from utils.config import build, check_values, load_config, merge, parse_overrides
from utils.errors import UserError
from utils.run_config import RunConfig, check_image_size
from utils.training.runtime import Dist


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, dict | None]:
    """The run's config and the checkpoint it resumes (None for a new run): from --config and overrides,
    or from the checkpoint when resuming (overrides still apply, model.* ones only if unchanged)."""
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
        return build(RunConfig, merge(ckpt["config"], overrides)), ckpt
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


def is_run_dir_without_checkpoint(path: Path) -> bool:
    """Whether `path` is a run folder that a run left before its first checkpoint (config.yaml only)."""
    return path.is_dir() and (path / "config.yaml").is_file() and not has_checkpoint(path)


def new_run_dir(cfg: RunConfig, d: Dist) -> Path:
    """The folder of a new run; log.run_dir may name one that a failed start left without a checkpoint."""
    if cfg.log.run_dir:
        run_dir = Path(cfg.log.run_dir)
        if run_dir.is_dir() and has_checkpoint(run_dir):
            raise UserError(f"log.run_dir={run_dir} already holds a run; continue it with --resume {run_dir}")
        return run_dir
    stamp = [datetime.now().strftime("%Y%m%d-%H%M%S")]
    if d.enabled:
        dist.broadcast_object_list(stamp, src=0)
    run_dir = Path(cfg.log.out_dir) / f"{cfg.log.name or 'run'}-{stamp[0]}"
    suffix = 1
    while d.is_main and run_dir.exists():  # two runs started in the same second
        run_dir = Path(cfg.log.out_dir) / f"{cfg.log.name or 'run'}-{stamp[0]}-{suffix}"
        suffix += 1
    return run_dir
