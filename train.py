"""Train the landmark detector and generator (the paper's inter- and intra-subject objective).

    python train.py --config configs/celeba.yaml data.root=/data/celeba [section.key=value ...]
    python train.py --resume runs/celeba-20261121-120000          # continue exactly where it stopped
    torchrun --standalone --nproc_per_node 4 train.py --config configs/celeba.yaml data.root=/data/celeba

Everything a run writes goes to `runs/<name>-<date>-<time>/`: config.yaml, log.jsonl (one JSON
record per log step and per validation), PNG grids of landmarks and reconstructions, and
checkpoints (step_XXXXXXXX.pt, last.pt, best.pt by validation NME). Checkpoints are single
self-contained files written atomically; `--resume` restores weights, optimisers, schedulers,
step, data order and RNG, so a resumed run ends with the same weights as an uninterrupted one.
A non-finite loss stops the run naming the step; Ctrl-C saves a checkpoint first.
`train.max_minutes=55` gives one invocation a wall-time budget: when it is spent the run validates,
saves and stops, and `--resume` continues it; `train.decay_at_budget=0.7` brings the first learning-rate
decay forward to 70 % of that budget when the step schedule has not reached it, so a slow machine still
trains at the lower rate before the budget ends.
`python train.py --print-config` prints every config key with its default, what it accepts and what it does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from time import monotonic
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from datasets import build_eval_dataset, build_train_dataset
from extract_data import extract_points, resolve_device
from losses import build_reconstruction_loss, equivariance_loss, separation_loss
from model import HEATMAP_STRIDE, LandmarkAutoencoder, build_model, count_parameters, derangement
from utils.checkpoint import (FORMAT, atomic_torch_save, git_sha, prune_step_checkpoints,
                              read_training_checkpoint, step_checkpoints)
from utils.config import (build, check_values, commented_yaml, load_config, markdown_table, merge, parse_overrides,
                          to_dict, to_yaml)
from utils.config_keys import TRAIN_KEYS
from utils.errors import UserError, one_line
from utils.geometry import heatmap_to_image_xy
from utils.metrics import collapse_stats, collapse_warning, format_collapse, nme, regress_points
from utils.sampler import ResumableBatchSampler, batches_per_pass
from utils.train_config import LossConfig, OptimConfig, RuntimeConfig, TrainConfig
from utils.warm_start import init_from_checkpoint
from utils.visualize import distinct_colors, draw_points, image_grid, save_png


VALIDATION_SPLITS = {"celeba": ("mafl-train", ""), "synthetic": ("mafl-train", ""), "mafl-train": ("mafl-train", ""),
                     "aflw": ("aflw-train", ""), "mtfl": ("mtfl-train", "mtfl-val")}


class NonFiniteLoss(Exception):
    pass


# ------------------------------------------------------------------------------------------- setup

@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Single process unless torchrun's environment variables are set; then one process per rank."""
    if "RANK" not in os.environ:
        return Dist(), resolve_device(device_name, "runtime.device")
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name, "runtime.device")
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, dict | None]:
    """The run's config: from --config and overrides, or from the checkpoint when resuming."""
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
        return build(TrainConfig, merge(ckpt["config"], overrides)), ckpt
    if not args.config and not args.print_config:
        raise UserError("give --config configs/<name>.yaml (or --resume RUN_FOLDER)")
    cfg = load_config(TrainConfig, args.config, args.overrides)
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


def check_config(cfg: TrainConfig) -> None:
    """Every value in range (one line naming the key, the value and what is allowed), and the rules between keys."""
    check_values(cfg, TRAIN_KEYS)
    if not cfg.data.root:
        raise UserError("data.root is not set: add data.root=/path/to/dataset on the command line")
    if cfg.data.image_size % (4 * 2 ** cfg.model.hourglass_depth):
        raise UserError(f"data.image_size={cfg.data.image_size} must be a multiple of {4 * 2 ** cfg.model.hourglass_depth} "
                        f"(4 times 2^model.hourglass_depth)")
    if cfg.loss.separation_weight > 0 and cfg.model.num_points < 2:
        raise UserError("loss.separation_weight > 0 needs model.num_points >= 2: it pushes points apart")
    if cfg.train.batch_size < 2 and cfg.train.objective in ("all", "inter"):
        raise UserError("train.batch_size must be >= 2: the auxiliary subject is another image of the batch")


def import_summary_writer() -> type:
    """TensorBoard's SummaryWriter, or a one-line error naming the package when it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("log.tensorboard=true needs the tensorboard package: pip install tensorboard "
                        "(or set log.tensorboard=false)") from None
    return SummaryWriter


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / "last.pt").exists() or bool(step_checkpoints(run_dir))


def is_run_dir_without_checkpoint(path: Path) -> bool:
    """Whether `path` is a run folder that a run left before its first checkpoint (config.yaml only)."""
    return path.is_dir() and (path / "config.yaml").is_file() and not has_checkpoint(path)


def new_run_dir(cfg: TrainConfig, d: Dist) -> Path:
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


def validation_sets(cfg: TrainConfig) -> tuple[Subset, Subset] | None:
    """Fixed fit and evaluation subsets for the in-training NME (disjoint, deterministic)."""
    v = cfg.validation
    fit_split, eval_split = VALIDATION_SPLITS.get(cfg.data.dataset, ("", ""))
    fit_split, eval_split = v.fit_split or fit_split, v.eval_split or eval_split
    if not v.enabled or not fit_split:
        return None
    root = v.root or cfg.data.root
    make = lambda split: build_eval_dataset(split, root, image_size=cfg.data.image_size, tight=cfg.data.tight,  # noqa: E731
                                            skip_bad_images=cfg.data.skip_bad_images)
    fit = make(fit_split)
    if not eval_split or eval_split == fit_split:  # hold out the tail of the fit split
        num_eval = min(v.num_eval, len(fit) // 2)
        return Subset(fit, range(min(v.num_fit, len(fit) - num_eval))), Subset(fit, range(len(fit) - num_eval, len(fit)))
    evaluation = make(eval_split)
    return Subset(fit, range(min(v.num_fit, len(fit)))), Subset(evaluation, range(min(v.num_eval, len(evaluation))))


def validate(model: LandmarkAutoencoder, sets: tuple[Subset, Subset], cfg: TrainConfig, device: torch.device
             ) -> tuple[float, dict]:
    """(Forward NME in percent of a ridge regressor fitted on the fit subset, on the evaluation subset;
    the collapse measures of the evaluation subset, `utils.metrics.collapse_stats`)."""
    fit, evaluation = (extract_points(model, s, batch_size=cfg.validation.batch_size, device=device, progress=False)
                       for s in sets)
    predicted = regress_points(fit["detected"], fit["annotated"], evaluation["detected"], cfg.validation.reg)
    return (100.0 * float(nme(predicted, evaluation["annotated"]).mean()),
            collapse_stats(evaluation["detected"], evaluation["annotated"]))


# ------------------------------------------------------------------------------------------- pictures

def to_uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, S, S) in [0, 1] -> list of (S, S, 3) uint8 RGB."""
    return list((images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))


def save_training_grid(path: Path, batch: dict, rec, aux_index: torch.Tensor, num_points: int,
                       columns: int = 8) -> np.ndarray:
    """Save and return the (H, W, 3) uint8 grid. Rows: x and x' with their detected points, the auxiliary
    subject, intermediates, reconstructions."""
    colors = distinct_colors(num_points)
    n = min(columns, batch["x"].shape[0])
    size = batch["x"].shape[-1]
    def image_px(points: torch.Tensor) -> np.ndarray:  # (B, K, 2) heatmap px -> image px
        return heatmap_to_image_xy(points.detach().float().cpu(), HEATMAP_STRIDE).numpy()

    def with_points(images: torch.Tensor, points: np.ndarray) -> list[np.ndarray]:
        return [draw_points(im, p, colors) for im, p in zip(to_uint8_images(images), points)]

    points_x, aux = image_px(rec.points_x), aux_index[:n].cpu()
    rows = [with_points(batch["x"][:n], points_x[:n]),
            with_points(batch["x_prime"][:n], image_px(rec.points_x_prime[:n])),
            with_points(batch["x"][aux], points_x[aux])]
    rows += [to_uint8_images(images[:n]) for images in rec.intermediates.values()]
    rows += [to_uint8_images(images[:n]) for images in rec.outputs]
    scale = max(1, 128 // size)
    tiles = [np.kron(im, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else im for row in rows for im in row]
    grid = image_grid(tiles, ncols=n)
    save_png(path, grid)
    return grid


# ------------------------------------------------------------------------------------------- the step

def train_step(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
               networks: list[torch.nn.Module], batch: dict, aux_index: torch.Tensor, cfg: TrainConfig,
               device: torch.device, d: Dist) -> tuple[dict[str, float], Any]:
    """One iteration: forward, loss, backward, clipping per network, both optimiser steps."""
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    x = batch["x"].to(device, non_blocking=True).contiguous(memory_format=fmt)  # (B, 3, S, S)
    x_prime = batch["x_prime"].to(device, non_blocking=True).contiguous(memory_format=fmt)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.runtime.amp == "bf16" and device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        rec = model(x, x_prime, aux_index, cfg.train.objective, cfg.train.aux_source)
        terms = loss_fn(rec.outputs, rec.targets)
    terms = add_landmark_terms(terms, rec, batch, cfg.loss, x.shape[-1])
    values = torch.stack([t.detach().float() for t in terms.values()])
    finite = torch.isfinite(values).all().float()
    if d.enabled:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite.item() < 1:
        raise NonFiniteLoss(", ".join(f"{k}={v:.4g}" for k, v in zip(terms, values.tolist())))
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    if cfg.train.grad_clip > 0:
        for net in networks:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
    for opt in optimizers:
        opt.step()
    return dict(zip(terms, values.tolist())), rec


def add_landmark_terms(terms: dict[str, torch.Tensor], rec, batch: dict, loss_cfg: LossConfig,
                       image_size: int) -> dict[str, torch.Tensor]:
    """The reconstruction terms plus the enabled landmark terms, weighted into "total".

    Reads the detected points and the augmentation's view-to-view map, never annotated points.
    """
    terms = dict(terms)
    if loss_cfg.separation_weight > 0:
        both_views = torch.cat((rec.points_x, rec.points_x_prime)) * (HEATMAP_STRIDE / image_size)  # (2B, K, 2)
        terms["separation"] = separation_loss(both_views, loss_cfg.separation_bandwidth)
        terms["total"] = terms["total"] + loss_cfg.separation_weight * terms["separation"]
    if loss_cfg.equivariance_weight > 0:
        to_px = lambda points: heatmap_to_image_xy(points, HEATMAP_STRIDE)  # noqa: E731
        x_to_x_prime = batch["x_to_x_prime"].to(rec.points_x.device)  # (B, 2, 3)
        terms["equivariance"] = equivariance_loss(to_px(rec.points_x), to_px(rec.points_x_prime), x_to_x_prime,
                                                  image_size)
        terms["total"] = terms["total"] + loss_cfg.equivariance_weight * terms["equivariance"]
    return terms


# ------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config, e.g. configs/celeba.yaml (configs/synthetic.yaml for a CPU run)")
    p.add_argument("--resume", metavar="RUN_OR_FILE",
                   help="continue a run: its folder (newest checkpoint) or a checkpoint file; overrides still apply "
                        "(e.g. train.epochs=40 to train longer)")
    p.add_argument("--print-config", nargs="?", const="yaml", choices=("yaml", "markdown"),
                   help="print the resolved config (defaults, --config, overrides) with a comment per key and exit; "
                        "'markdown' prints the README's table of keys instead")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. data.root=/data/celeba train.lr_fan=1e-4 runtime.amp=bf16")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def configure_runtime(runtime: RuntimeConfig, device: torch.device, d: Dist) -> None:
    """Threads, determinism and seeds of this process."""
    # Loader workers are fork()ed: an OpenCV thread pool started here would deadlock them, and with
    # one process per worker OpenCV's own threads only oversubscribe the CPU.
    cv2.setNumThreads(1)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if runtime.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(runtime.seed + d.rank)


def build_optimizers(networks: list[torch.nn.Module], optim: OptimConfig
                     ) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.StepLR]]:
    """One Adam and one StepLR per network (detector, generator), with their own learning rates."""
    optimizers = [torch.optim.Adam(net.parameters(), lr=lr, betas=optim.betas, weight_decay=optim.weight_decay)
                  for net, lr in zip(networks, (optim.lr_fan, optim.lr_gen))]
    return optimizers, [torch.optim.lr_scheduler.StepLR(opt, optim.step_size, optim.gamma) for opt in optimizers]


def restore_training_state(ckpt: dict, model: torch.nn.Module, optimizers: list, schedulers: list
                           ) -> tuple[int, int, int, float]:
    """Load a checkpoint's weights, optimisers, schedulers and torch RNG; return (step, data pass, batch in
    pass, best validation NME)."""
    model.load_state_dict(ckpt["model"])
    for obj, key in ((optimizers[0], "optim_fan"), (optimizers[1], "optim_gen"),
                     (schedulers[0], "sched_fan"), (schedulers[1], "sched_gen")):
        obj.load_state_dict(ckpt[key])
    torch.set_rng_state(ckpt["rng"]["torch"])
    return ckpt["step"], ckpt["data_pass"], ckpt["batch_in_pass"], ckpt["best_val_nme"]


def print_run_header(cfg: TrainConfig, run_dir: Path, device: torch.device, d: Dist, num_images: int,
                     model: LandmarkAutoencoder, report, total_steps: int, step: int) -> None:
    print(f"run folder {run_dir}  (git {git_sha()})")
    print(f"device {device}, {d.world_size} process(es), batch {cfg.train.batch_size} per process = "
          f"{cfg.train.batch_size * d.world_size} per step; {num_images} training images")
    print(f"detector {count_parameters(model.detector, True):,} trainable of {count_parameters(model.detector):,}; "
          f"generator {count_parameters(model.generator):,}; FAN init {cfg.model.fan_init}"
          + (f" ({report.summary()})" if report else ""))
    print(f"objective {cfg.train.objective}, {total_steps} steps" + (f", resuming at step {step}" if step else ""))


def report_validation(progress: tqdm, step: int, val_nme: float, best_nme: float, stats: dict) -> dict[str, str]:
    """Write a validation's line (and a collapse warning if due); return the progress bar's postfix."""
    progress.write(f"step {step}: validation NME {val_nme:.2f}% (best {best_nme:.2f}%); {format_collapse(stats)}")
    if warning := collapse_warning(stats):
        progress.write(f"warning: step {step}: {warning}")
    return {"val_nme": f"{val_nme:.2f}", "spread": f"{stats['spread']:.2f}",
            "distinct": f"{stats['distinct']}/{stats['num_points']}", "lock": f"{stats['part_lock']:.2f}"}


class RunLog:
    """Rank 0's log: one JSON record per line in log.jsonl, mirrored to TensorBoard when it is on.

    A new run replaces the log.jsonl of a start that failed before its first checkpoint; a resumed run
    appends. The run folder is created here.
    """

    def __init__(self, path: Path, *, append: bool, writer_cls: type | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a" if append else "w")
        self.writer = writer_cls(path.parent / "tensorboard") if writer_cls is not None else None

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def add_image(self, tag: str, image_rgb: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_rgb, step, dataformats="HWC")

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def training_state(cfg: TrainConfig, model: torch.nn.Module, optimizers: list, schedulers: list, step: int,
                   data_pass: int, batch_in_pass: int, best_nme: float) -> dict:
    """Everything a checkpoint holds (README, "Checkpoints"); `restore_training_state` reads it back."""
    return {"format": FORMAT, "config": to_dict(cfg), "model": model.state_dict(),
            "optim_fan": optimizers[0].state_dict(), "optim_gen": optimizers[1].state_dict(),
            "sched_fan": schedulers[0].state_dict(), "sched_gen": schedulers[1].state_dict(),
            "step": step, "epoch": step // cfg.train.iters_per_epoch, "data_pass": data_pass,
            "batch_in_pass": batch_in_pass, "best_val_nme": best_nme, "git_sha": git_sha(),
            "rng": {"torch": torch.get_rng_state()}}


def link_last_checkpoint(path: Path) -> None:
    """Make last.pt a second name of the step file `path` (no second write), atomically."""
    tmp = path.with_name(".last.pt.link")
    tmp.unlink(missing_ok=True)
    os.link(path, tmp)
    os.replace(tmp, path.with_name("last.pt"))


def train(args: argparse.Namespace) -> int:
    cfg, ckpt = resolve_config(args)
    if args.print_config:
        check_values(cfg, TRAIN_KEYS)
        print(markdown_table(cfg, TRAIN_KEYS) if args.print_config == "markdown" else commented_yaml(cfg, TRAIN_KEYS),
              end="")
        return 0
    check_config(cfg)
    summary_writer = import_summary_writer() if cfg.log.tensorboard else None  # before anything is written
    d, device = setup_distributed(cfg.runtime.device)
    configure_runtime(cfg.runtime, device, d)

    # data
    dataset = build_train_dataset(cfg.data.dataset, cfg.data.root, image_size=cfg.data.image_size,
                                  angle=cfg.data.angle, tight=cfg.data.tight, tight_jitter=cfg.data.tight_jitter,
                                  flip=cfg.data.flip, skip_bad_images=cfg.data.skip_bad_images, seed=cfg.runtime.seed)
    if batches_per_pass(len(dataset), cfg.train.batch_size, d.world_size) < 1:
        raise UserError(f"data set {cfg.data.root} has {len(dataset)} images: fewer than one batch of "
                        f"{cfg.train.batch_size} per process; lower train.batch_size")
    val_sets = validation_sets(cfg) if d.is_main else None

    # model, loss, optimisers
    model, report = build_model(cfg.model, from_checkpoint=ckpt is not None or bool(cfg.train.init_from))
    loss_fn = build_reconstruction_loss(perceptual=cfg.loss.perceptual.enabled, weights=cfg.loss.perceptual.weights,
                                        imagenet_normalize=cfg.loss.perceptual.imagenet_normalize,
                                        pixel_weight=cfg.loss.pixel_weight, perceptual_weight=cfg.loss.perceptual_weight)
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    loss_fn.to(device)
    networks = [model.detector, model.generator]
    optimizers, schedulers = build_optimizers(networks, cfg.train)

    step, data_pass, batch_in_pass, best_nme = 0, 0, 0, math.inf
    if ckpt is not None:
        step, data_pass, batch_in_pass, best_nme = restore_training_state(ckpt, model, optimizers, schedulers)
        run_dir = Path(ckpt["path"]).parent
    else:
        run_dir = new_run_dir(cfg, d)
        if cfg.train.init_from:  # weights only: optimisers, schedules and step stay fresh
            loaded = init_from_checkpoint(model, cfg.train.init_from, cfg.model)
            if d.is_main:
                print(loaded)

    train_model: torch.nn.Module = model
    if d.enabled:
        if cfg.runtime.sync_batchnorm:
            train_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.runtime.compile:
        train_model = torch.compile(train_model)

    total_steps = cfg.train.total_steps
    run_log = RunLog(run_dir / "log.jsonl", append=ckpt is not None, writer_cls=summary_writer) if d.is_main else None
    if d.is_main:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        print_run_header(cfg, run_dir, device, d, len(dataset), model, report, total_steps, step)

    def save(name: str) -> Path:
        state = training_state(cfg, model, optimizers, schedulers, step, data_pass, batch_in_pass, best_nme)
        path = run_dir / name
        atomic_torch_save(state, path)
        return path

    def checkpoint() -> None:
        link_last_checkpoint(save(f"step_{step:08d}.pt"))
        prune_step_checkpoints(run_dir, cfg.log.keep_checkpoints)

    def log(record: dict) -> None:
        if run_log is not None:
            run_log.write(record)

    if d.is_main and cfg.log.save_init and step == 0:
        save("init.pt")
    progress = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                    disable=not (d.is_main and cfg.log.progress))
    window, window_start, train_seconds, val_seconds = [], time.perf_counter(), 0.0, 0.0
    val_postfix: dict[str, str] = {}  # the last validation's NME and collapse measures, on the progress bar
    start = monotonic()
    deadline = start + 60 * cfg.train.max_minutes if cfg.train.max_minutes > 0 else math.inf
    decay_deadline = start + 60 * cfg.train.max_minutes * cfg.train.decay_at_budget if deadline < math.inf \
        and cfg.train.decay_at_budget > 0 else math.inf  # no budget: the step schedule alone
    model.train()
    try:
        while step < total_steps:
            dataset.set_epoch(data_pass)
            sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, seed=cfg.runtime.seed,
                                            data_pass=data_pass, start_batch=batch_in_pass, rank=d.rank,
                                            world_size=d.world_size)
            loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                                pin_memory=device.type == "cuda")
            for batch in loader:
                t0 = time.perf_counter()
                aux_gen = torch.Generator().manual_seed((cfg.runtime.seed * 1_000_003 + step) * 1009 + d.rank)
                aux_index = derangement(batch["x"].shape[0], aux_gen)
                try:
                    values, rec = train_step(train_model, loss_fn, optimizers, networks, batch, aux_index, cfg, device, d)
                except NonFiniteLoss as exc:
                    last = run_dir / "last.pt"
                    print(f"error: non-finite loss at step {step + 1} ({exc}); stopping. Last good checkpoint: "
                          f"{last if last.exists() else 'none yet'}", file=sys.stderr)
                    log({"step": step + 1, "event": "non_finite_loss", "detail": str(exc)})
                    return 1
                step += 1
                batch_in_pass += 1
                train_seconds += time.perf_counter() - t0
                window.append(values)
                progress.update(1)
                if step % cfg.log.log_every == 0 and out_of_time(deadline, device, d):
                    total_steps = step  # the last step: validate and checkpoint below, then stop
                    progress.write(f"train.max_minutes={cfg.train.max_minutes:g} reached at step {step}; stopping")
                if (step % cfg.log.log_every == 0 and schedulers[0].last_epoch < cfg.train.step_size
                        and out_of_time(decay_deadline, device, d)):
                    jump_to_first_decay(schedulers)
                    progress.write(f"train.decay_at_budget={cfg.train.decay_at_budget:g} of the time budget reached "
                                   f"at step {step}: learning rate x {cfg.train.gamma:g} now")
                    log({"step": step, "event": "decay_at_budget", "lr_fan": optimizers[0].param_groups[0]["lr"]})
                if step % cfg.log.log_every == 0 or step == total_steps:
                    record = window_record(step, window, time.perf_counter() - window_start, optimizers, cfg.train,
                                           d.world_size)
                    log(record)
                    progress.set_postfix(loss=f"{record['total']:.4f}", img_s=f"{record['images_per_s']:.0f}",
                                         **val_postfix)
                    window, window_start = [], time.perf_counter()
                if d.is_main and step % cfg.log.image_every == 0:
                    grid = save_training_grid(run_dir / f"train_{step:08d}.png", batch, rec, aux_index,
                                              cfg.model.num_points)
                    if run_log is not None:
                        run_log.add_image("train_grid", grid, step)
                epoch_end = step % cfg.train.iters_per_epoch == 0
                if epoch_end:
                    for scheduler in schedulers:  # after the optimiser steps (the reference calls it before)
                        scheduler.step()
                if d.is_main and val_sets is not None and (step % cfg.validation.every == 0 or step == total_steps):
                    t_val = time.perf_counter()
                    val_nme, stats = validate(model, val_sets, cfg, device)
                    val_seconds += time.perf_counter() - t_val
                    improved = val_nme < best_nme
                    best_nme = min(best_nme, val_nme)
                    log({"step": step, "val_nme": val_nme,
                         **{f"val_{key}": value for key, value in stats.items() if key != "num_points"},
                         "best_val_nme": best_nme,
                         "val_seconds_fraction": val_seconds / max(train_seconds + val_seconds, 1e-9)})
                    val_postfix = report_validation(progress, step, val_nme, best_nme, stats)
                    if improved:
                        save("best.pt")
                if d.is_main and (step % cfg.log.checkpoint_every == 0 or epoch_end or step == total_steps):
                    checkpoint()
                if step >= total_steps:
                    break
            else:
                data_pass, batch_in_pass = data_pass + 1, 0
    except KeyboardInterrupt:
        if d.is_main:
            checkpoint()
            print(f"\ninterrupted at step {step}: saved {run_dir / 'last.pt'}; continue with "
                  f"python train.py --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        progress.close()
        if run_log is not None:
            run_log.close()
    if d.enabled:
        log_ranks_in_sync(model, d, run_dir, step)
    if d.is_main:
        print(f"done: {step} steps; checkpoints in {run_dir}" +
              (f"; best validation NME {best_nme:.2f}%" if math.isfinite(best_nme) else ""))
    return 0


def window_record(step: int, window: list[dict[str, float]], elapsed_s: float, optimizers: list,
                  optim: OptimConfig, world_size: int) -> dict:
    """The log.jsonl record of the steps since the last one: mean loss terms, learning rates, throughput."""
    return {"step": step, "epoch": step / optim.iters_per_epoch,
            **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
            "lr_fan": optimizers[0].param_groups[0]["lr"], "lr_gen": optimizers[1].param_groups[0]["lr"],
            "images_per_s": len(window) * optim.batch_size * world_size / max(elapsed_s, 1e-9)}


def log_ranks_in_sync(model: torch.nn.Module, d: Dist, run_dir: Path, step: int) -> None:
    """Under DDP: compare the ranks' weights; rank 0 prints the result and appends it to log.jsonl."""
    in_sync = check_ranks_in_sync(model, d)
    if d.is_main:
        print(f"weights identical on all {d.world_size} ranks: {in_sync}")
        with open(run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "ranks_in_sync": in_sync, "world_size": d.world_size}) + "\n")


def jump_to_first_decay(schedulers: list[torch.optim.lr_scheduler.StepLR]) -> None:
    """Move each StepLR schedule ahead to its first decay: learning rates x gamma, epoch count at step_size.

    Later decays then come step_size epochs after this one; the schedulers' state (checkpointed)
    records the jump, so a resumed run neither repeats nor loses it.
    """
    for scheduler in schedulers:
        for group in scheduler.optimizer.param_groups:
            group["lr"] *= scheduler.gamma
        scheduler.last_epoch = scheduler.step_size


def out_of_time(deadline: float, device: torch.device, d: Dist) -> bool:
    """Whether the wall-time budget is spent; under DDP, rank 0's clock decides for all ranks."""
    if deadline == math.inf:
        return False
    flag = torch.tensor([float(monotonic() > deadline)], device=device)
    if d.enabled:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def check_ranks_in_sync(model: torch.nn.Module, d: Dist) -> bool:
    """Gather a per-tensor checksum of every rank's parameters; True if all ranks agree exactly.

    BatchNorm running statistics are left out: each rank updates them from its own batch, and DDP
    overwrites them with rank 0's at every forward (rank 0's are the ones checkpointed).
    """
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    if dist.get_backend() == "gloo":
        sums = sums.cpu()
    gathered = [torch.zeros_like(sums) for _ in range(d.world_size)]
    dist.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


if __name__ == "__main__":
    sys.exit(main())
