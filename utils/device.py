"""Which torch device a run uses: the one place that turns `auto`, `cpu`, `cuda:N` or `mps` into a device."""

from __future__ import annotations

import re

import torch

from utils.errors import UserError

DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str, key: str = "--device") -> torch.device:
    """The torch device named `name` (auto, cpu, cuda, cuda:N, mps), checked to exist on this machine.

    key: the option or config key that gave the name, for the one-line error.
    """
    if not DEVICE_NAME.fullmatch(name):
        raise UserError(f"{key} {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{key} {name!r}: CUDA is not available on this machine; use cpu or auto")
        count = torch.cuda.device_count()
        if int(name.partition(":")[2] or 0) >= count:
            raise UserError(f"{key} {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{key} {name!r}: MPS is not available on this machine; use cpu or auto")
    return torch.device(name)
