"""Turn a model trained with the reference code into a self-contained checkpoint of this repository.

    python import_reference.py --fan Exp_354/model_33.fan.pth --gen Exp_354/model_33.gen.pth \\
        --core fan_109.pth --out runs/imported/exp354_e33.pt
    python extract_data.py --checkpoint runs/imported/exp354_e33.pt --data-root /data/celeba --splits mafl-train,mafl-test

The reference saves two state dicts per epoch (docs/reference.md, "Checkpoints"):
- `model_N.fan.pth`: the FAN. In the incremental mode every 3x3 conv holds only its learned `W`
  (out x out); the frozen kernel that W recombines is not saved: it is the same conv's `weight` in
  the core file, fan_109.pth. Finetune and scratch models hold plain `weight`s and need no core.
- `model_N.gen.pth`: the generator. Its `downsampling.*` is our `encoder.layers.*`, its `main.*` our
  `decoder.*`, and a residual block's `main.*` our `body.*`.
The output holds both networks with the frozen kernels copied in (`old_weight` buffers), plus a
config (configs/celeba.yaml by default, with K and the widths read from the files), so that
extract_data.py, detect.py and `train.init_from` read it without fan_109.pth. `--resume` does not:
the reference saves no optimiser state.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import torch
from torch import Tensor

from model import LandmarkAutoencoder, build_model
from utils.checkpoint import FORMAT, OUTPUT_RULE, atomic_torch_save, check_output, checkpoint_identity, git_sha
from utils.config import load_config, to_dict
from utils.errors import UserError, exit_code_of
from utils.files import os_reason
from utils.pretrained import AUTO, pretrained_fan_path
from utils.state_dicts import unwrap_state_dict
from utils.run_config import RunConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "celeba.yaml"
PROJECTION_SUFFIX = ".W"  # a reference incremental conv's learned out x out matrix


def read_state_dict(path: Path, what: str) -> dict[str, Tensor]:
    """The tensors of a saved state dict (DataParallel's `module.` prefixes removed)."""
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a corrupt or foreign file: one line, not a traceback
        raise UserError(f"{path}: cannot read the {what} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def reference_generator_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the reference Generator's keys to ours (`downsampling.` -> `encoder.layers.`, `main.` -> `decoder.`)."""
    def rename(key: str) -> str:
        key = re.sub(r"^main\.(\d+)\.main\.", r"decoder.\1.body.", key)  # a residual block
        return re.sub(r"^main\.", "decoder.", re.sub(r"^downsampling\.", "encoder.layers.", key))

    return {rename(k): v for k, v in state.items()}


def _require(state: dict[str, Tensor], key: str, path: Path, what: str) -> Tensor:
    if key not in state:
        raise UserError(f"{path}: not a reference {what} state dict (no {key})")
    return state[key]


def architecture_of(fan: dict[str, Tensor], gen: dict[str, Tensor], fan_path: Path, gen_path: Path) -> dict:
    """The ModelConfig fields that the two reference state dicts fix: K, widths, depth, init mode."""
    head = _require(fan, "l_0.weight", fan_path, "FAN")  # (K, features, 1, 1)
    levels = [int(m.group(1)) for k in fan if (m := re.match(r"m0\.b1_(\d+)\.", k))]
    if not levels:
        raise UserError(f"{fan_path}: not a reference FAN state dict (no hourglass m0.b1_*)")
    conv_dim = _require(gen, "downsampling.0.weight", gen_path, "generator").shape[0]
    gen_points = _require(gen, "main.0.weight", gen_path, "generator").shape[0] - 4 * conv_dim
    if gen_points != head.shape[0]:
        raise UserError(f"{gen_path}: a generator for K={gen_points} landmarks, but {fan_path} detects "
                        f"K={head.shape[0]}: pass the two files of one model")
    return {"num_points": head.shape[0], "fan_features": head.shape[1], "hourglass_depth": max(levels),
            "fan_init": "incremental" if any(k.endswith(PROJECTION_SUFFIX) for k in fan) else "finetune",
            "gen_conv_dim": conv_dim,
            "gen_res_blocks": len({k.split(".")[1] for k in gen if re.match(r"main\.\d+\.main\.", k)})}


def with_frozen_kernels(fan: dict[str, Tensor], core: dict[str, Tensor], core_path: Path) -> dict[str, Tensor]:
    """An incremental FAN state dict completed with each projected conv's frozen kernel from the core file.

    For every `<conv>.W` (out x out) of the reference file, `<conv>.old_weight` is the core's
    `<conv>.weight` (out x in x 3 x 3), as the reference's convertLayer takes it.
    """
    out = dict(fan)
    for key in (k for k in fan if k.endswith(PROJECTION_SUFFIX)):
        conv = key[: -len(PROJECTION_SUFFIX)]
        kernel = core.get(f"{conv}.weight")
        if kernel is None or kernel.shape[0] != fan[key].shape[0]:
            found = "missing" if kernel is None else f"shape {tuple(kernel.shape)}"
            raise UserError(f"{core_path}: not the core this FAN was trained from ({conv}.weight {found}, "
                            f"expected {fan[key].shape[0]} output channels)")
        out[f"{conv}.old_weight"] = kernel
    return out


def load_networks(model: LandmarkAutoencoder, detector: dict[str, Tensor], generator: dict[str, Tensor],
                  fan_path: Path, gen_path: Path) -> None:
    """Load both state dicts strictly; any key or shape that differs is one line naming the file."""
    for module, state, path in ((model.detector, detector, fan_path), (model.generator, generator, gen_path)):
        own = module.state_dict()
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise UserError(f"{path}: not in the reference layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
            raise UserError(f"{path}: {detail}") from None


def import_reference(fan_path: Path, gen_path: Path, core: str, cfg: RunConfig) -> dict:
    """Our checkpoint dict for the reference files; `core` is a fan_109.pth path or `auto` (needed if incremental)."""
    fan = read_state_dict(fan_path, "reference FAN")
    gen = read_state_dict(gen_path, "reference generator")
    model_cfg = dataclasses.replace(cfg.model, fan_pretrained=None, **architecture_of(fan, gen, fan_path, gen_path))
    sources = {"fan": checkpoint_identity(fan_path), "gen": checkpoint_identity(gen_path)}
    if model_cfg.fan_init == "incremental":
        core_path = pretrained_fan_path(core)
        fan = with_frozen_kernels(fan, read_state_dict(core_path, "core FAN (fan_109.pth)"), core_path)
        sources["core"] = checkpoint_identity(core_path)
    model, _ = build_model(model_cfg, from_checkpoint=True)
    load_networks(model, fan, reference_generator_to_ours(gen), fan_path, gen_path)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    return {"format": FORMAT, "config": to_dict(cfg), "model": model.state_dict(), "step": 0, "epoch": 0,
            "git_sha": git_sha(), "imported_from": sources}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, epilog=OUTPUT_RULE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fan", type=Path, required=True, help="the reference's model_N.fan.pth")
    p.add_argument("--gen", type=Path, required=True, help="the reference's model_N.gen.pth (same N)")
    p.add_argument("--core", default=AUTO,
                   help="fan_109.pth the FAN was trained from, for incremental models (default: auto, the verified "
                        "copy in torch's hub cache, downloaded if absent); unused for finetune/scratch models")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write, e.g. runs/imported/exp354_e33.pt; "
                   "never a training checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused without it)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="the config recorded in the checkpoint, for its data and bottleneck settings (default: "
                        "configs/celeba.yaml, the reference's); K and the network widths come from the files")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. data.tight=64 if the model was trained with another margin")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    check_output(args.out, "--out", [("--fan", args.fan), ("--gen", args.gen), ("--core", args.core)], args.overwrite)
    cfg = load_config(RunConfig, args.config, args.overrides)
    ckpt = import_reference(args.fan, args.gen, args.core, cfg)
    try:
        atomic_torch_save(ckpt, args.out)
    except OSError as exc:  # a full disk: the old --out, if any, is intact
        raise UserError(f"{exc.filename or args.out}: cannot write ({os_reason(exc)})") from None
    model_cfg = ckpt["config"]["model"]
    print(f"{args.out}: {model_cfg['fan_init']} FAN with K={model_cfg['num_points']} and its generator, "
          f"imported from {args.fan} and {args.gen}")
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return exit_code_of(run, args)
    except KeyboardInterrupt:  # the write is atomic: --out is the old file or the new one, whole
        print(f"\ninterrupted (Ctrl-C): {args.out} is as it was, or whole if it was already written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
