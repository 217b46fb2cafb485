"""Pretrained weights the paper starts from, fetched at run time into torch's hub cache and verified.

Both files go to `torch.hub.get_dir()/checkpoints` ($TORCH_HOME/hub/checkpoints, by default
~/.cache/torch/hub/checkpoints), once; nothing is shipped with this repository.
- VGG16 ImageNet weights for the perceptual loss: torchvision's weights API
  (`VGG16_Weights.IMAGENET1K_V1`), which checks the SHA-256 prefix written in the file name.
- `fan_109.pth`, SAIC's MPII-pretrained FAN (licensed CC BY-NC 4.0 by its authors), from the
  original repository, checked by its git blob id.
Offline, or when a file is not the expected one, a UserError says in one line what to download
and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from utils.errors import UserError
from utils.files import update_with_file
from utils.run_config import ModelConfig
from utils.state_dicts import PretrainedWeights, read_pretrained_fan

DOWNLOAD_TIMEOUT_S = 15.0  # per connect and per read: an offline machine fails in seconds, not minutes


@dataclass(frozen=True)
class RemoteFile:
    """A file fetched once into the hub cache and checked by its git blob id."""

    name: str  # file name in the hub cache
    url: str
    git_blob_id: str  # sha1 of b"blob <size>\0" + content, what `git hash-object FILE` prints
    setting: str  # the config key that takes a path to a copy instead


FAN_109 = RemoteFile(
    name="fan_109.pth",
    url="https://raw.githubusercontent.com/ESanchezLozano/SAIC-Unsupervised-landmark-detection-NeurIPS2019/"
        "master/checkpoint_fansoft/fan_109.pth",
    git_blob_id="479fe8c3f4582551aea88235603bb91c17c72ed3",
    setting="model.fan_pretrained",
)
AUTO = "auto"  # model.fan_pretrained: the verified fan_109.pth of the hub cache, downloaded if absent


def hub_checkpoints_dir() -> Path:
    """torch's cache of downloaded weights: torch.hub.get_dir()/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content: sha1 of b"blob <size>\\0" followed by the bytes."""
    return update_with_file(hashlib.sha1(b"blob %d\0" % path.stat().st_size), path).hexdigest()


def download(url: str, dest: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Copy `url` (http(s) or file://) to `dest`; raises OSError (URLError, timeout) on failure."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def _reason(exc: OSError) -> str:
    return str(getattr(exc, "reason", None) or exc).splitlines()[0]


def fetch_verified(remote: RemoteFile, cache_dir: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """`cache_dir/remote.name`, downloaded first if absent, checked by its git blob id.

    The download goes to a `.part` file (one per process, so that several ranks starting at
    once do not write into one file) that is renamed only once complete and verified.
    """
    target = cache_dir / remote.name
    how_to = f"download {remote.url} and put it at {target} (or set {remote.setting}=/path/to/{remote.name})"
    if target.is_file():
        found = git_blob_id(target)
        if found != remote.git_blob_id:
            raise UserError(f"{target}: not the expected {remote.name} (git blob id {found}, expected "
                            f"{remote.git_blob_id}); delete it, then {how_to}")
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    print(f"downloading {remote.name} from {remote.url} to {target}", file=sys.stderr)
    try:
        download(remote.url, part, timeout_s)
        found = git_blob_id(part)
        if found != remote.git_blob_id:
            raise UserError(f"{remote.url}: the downloaded file is not the expected {remote.name} (git blob id "
                            f"{found}, expected {remote.git_blob_id}); {how_to}")
        os.replace(part, target)
    except OSError as exc:
        raise UserError(f"cannot download {remote.name} ({_reason(exc)}): {how_to}") from None
    finally:
        part.unlink(missing_ok=True)
    return target


def pretrained_fan_path(setting: str) -> Path:
    """The file that `model.fan_pretrained` names: `auto` is the verified fan_109.pth of the hub cache."""
    if setting == AUTO:
        return fetch_verified(FAN_109, hub_checkpoints_dir())
    return Path(os.path.expanduser(setting))


def pretrained_fan_weights(cfg: ModelConfig) -> PretrainedWeights | None:
    """The FAN weights a fresh model of `cfg` starts from: None for `fan_init: scratch` or without
    `fan_pretrained`; else the file it names (`auto`: fan_109.pth, fetched once and verified)."""
    if cfg.fan_init == "scratch" or not cfg.fan_pretrained:
        return None
    path = pretrained_fan_path(cfg.fan_pretrained)
    return PretrainedWeights(str(path), read_pretrained_fan(str(path)))


def imagenet_vgg16_url() -> str:
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1.url


def fetch_imagenet_vgg16(url: str) -> dict[str, Tensor]:
    """torchvision's ImageNet VGG16 state dict from the hub cache, downloaded there first if absent.

    `url` is `imagenet_vgg16_url()`; its file name carries the SHA-256 prefix that the download is
    checked against (torchvision's `check_hash=True`).
    """
    name = url.rsplit("/", 1)[-1]
    how_to = (f"put {name} from {url} into {hub_checkpoints_dir()}/ (or set loss.perceptual.weights=/path/to/{name}; "
              "offline smoke runs: loss.perceptual.weights=random)")
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except OSError as exc:
        raise UserError(f"cannot download VGG16 ImageNet weights ({_reason(exc)}): {how_to}") from None
    except Exception as exc:  # torch.hub's "invalid hash value", or a cached file that torch.load cannot read
        raise UserError(f"VGG16 ImageNet weights: {str(exc).splitlines()[0]}; {how_to}") from None
