"""Reading state dicts from files that are already on disk (nothing here downloads): the tensors inside a
saved file, and a pretrained FAN such as fan_109.pth with the path it came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from utils.errors import UserError


class PretrainedWeights(NamedTuple):
    """A state dict and where it came from (a path), for `model.build_model` and its error messages."""

    source: str
    state_dict: dict[str, Tensor]


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """The state dict inside a loaded file: accepts {'state_dict': ...} wrappers and 'module.' prefixes."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def read_pretrained_fan(path: str) -> dict[str, Tensor]:
    """The state dict of a pretrained FAN file such as fan_109.pth."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: pretrained FAN file not found (model.fan_pretrained)") from None
    except Exception as exc:
        raise UserError(f"{path}: cannot read a FAN state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    try:
        return unwrap_state_dict(obj)
    except TypeError as exc:
        raise UserError(f"{path}: {exc}") from None
