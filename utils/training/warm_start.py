"""Warm start (`train.init_from=PATH`): a new run that begins with another run's weights.

Unlike `--resume`, only the weights are taken, from one of our checkpoints or an imported reference
model (import_reference.py): the optimisers, LR schedules, step counter, data order and best
validation NME start fresh, and the run gets its own folder. The use: fine-tune a CelebA model on
AFLW (configs/aflw.yaml), as IMM does for its AFLW column. The two models must have the same
architecture; the rest of the config (data, loss, schedule, bottleneck) is the new run's.
"""

from __future__ import annotations

from torch import nn

from utils.checkpoint import read_checkpoint
from utils.config import build
from utils.errors import UserError
from utils.run_config import ModelConfig

SHAPE_KEYS = ("num_points", "fan_features", "hourglass_depth", "gen_conv_dim", "gen_res_blocks")


def architecture_differences(source: ModelConfig, target: ModelConfig) -> list[str]:
    """'model.<key>=<source value> there, <target value> here' for each setting that changes the tensors."""
    differences = [f"model.{key}={getattr(source, key)} there, {getattr(target, key)} here"
                   for key in SHAPE_KEYS if getattr(source, key) != getattr(target, key)]
    if (source.fan_init == "incremental") != (target.fan_init == "incremental"):  # finetune = scratch in shape
        differences.append(f"model.fan_init={source.fan_init} there, {target.fan_init} here")
    return differences


def init_from_checkpoint(model: nn.Module, path: str, target: ModelConfig, announce: bool = False) -> str:
    """Load the weights of checkpoint `path` into `model` (built from `target`); returns a line saying so,
    which `announce` also prints (rank 0 of a run)."""
    ckpt = read_checkpoint(path)
    source = build(ModelConfig, ckpt["config"]["model"], prefix="model.")
    differences = architecture_differences(source, target)
    if differences:
        raise UserError(f"train.init_from={path}: another architecture ({'; '.join(differences)}); "
                        "a warm start needs the same K and networks")
    model.load_state_dict(ckpt["model"], strict=True)
    line = (f"weights from {ckpt['path']} (its step {ckpt['step']}); optimisers, schedules and the step "
            "counter start fresh")
    if announce:
        print(line)
    return line
