"""The config of a training run (`train.py --config FILE section.key=value ...`), one frozen dataclass per
YAML section, each key declared with its default, what it means and which values it accepts.

Defaults are the paper's. `utils/config.py` loads YAML files and overrides into these classes and checks
the values; `python train.py --print-config` prints every key with its help, and docs/configs.md is the
same table in Markdown. Every checkpoint stores its run's config, so `extract_data.py` and `detect.py`
read the crop size and margin a model was trained with from here too.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from utils.config import section, setting
from utils.dataset_registry import EVAL_SPLITS, TRAINING_SETS
from utils.errors import UserError
from utils.geometry import input_size_multiple

FanInit = Literal["scratch", "finetune", "incremental"]
Objective = Literal["all", "baseline", "inter", "cycle"]
AuxSource = Literal["permute", "third_pass"]
FAN_INITS: tuple[str, ...] = typing.get_args(FanInit)
OBJECTIVES: tuple[str, ...] = typing.get_args(Objective)
AUX_SOURCES: tuple[str, ...] = typing.get_args(AuxSource)


@dataclass(frozen=True)
class ModelConfig:
    num_points: int = setting(10, "number of landmarks K", at_least=1)
    fan_init: FanInit = setting("incremental", "how the FAN detector starts: scratch, finetune (all fan_109.pth "
                                "weights train) or incremental (its 3x3 kernels frozen and recombined by learned "
                                "matrices)")
    fan_pretrained: str | None = setting(None, "SAIC's fan_109.pth: auto (fetched once into torch's hub cache and "
                                         "checked), a path, or null (fan_init falls back to scratch, with a warning)")
    fan_features: int = setting(256, "FAN width (256 in the reference; smaller for CPU-sized runs)", at_least=1)
    hourglass_depth: int = setting(4, "levels of the hourglass (4 in the reference)", at_least=1)
    gen_conv_dim: int = setting(32, "generator width", at_least=1)
    gen_res_blocks: int = setting(6, "residual blocks of the generator", at_least=0)
    temperature: float = setting(0.1, "soft-argmax temperature T", above=0)
    heatmap_s: float = setting(0.5, "Gaussian spread s = 2 sigma^2 of the bottleneck heatmaps, in heatmap pixels",
                               above=0)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("celeba", "training data set and layout", choices=tuple(TRAINING_SETS))
    root: str = setting("", "the data set's folder in its original layout; set it on the command line")
    image_size: int = setting(128, "crop side S in pixels fed to the networks; a multiple of 4 * "
                              "2^model.hourglass_depth", at_least=1)
    angle: float = setting(15.0, "rotation std of x' in degrees; x uses twice it (0: no rotation)", at_least=0)
    tight: int = setting(70, "crop margin around the annotated points, percent of their extent (70 in the paper)",
                         at_least=0)
    tight_jitter: float = setting(4.0, "random change of the margin per view, percent", at_least=0)
    scale_jitter: float = setting(0.0, "std of the log of each view's crop-box scale, so the views differ in scale "
                                  "as crops around a face detector's box do (0: off, the reference)", at_least=0)
    shift_jitter: float = setting(0.0, "std of each view's crop-box shift, fraction of its width and height "
                                  "(0: off, the reference)", at_least=0)
    flip: bool = setting(False, "random horizontal flips (points relabelled left/right)")
    num_workers: int = setting(4, "data loading processes (0: in the training process)", at_least=0)
    skip_bad_images: bool = setting(False, "skip missing, undecodable or truncated images (counted) instead of "
                                    "stopping")


@dataclass(frozen=True)
class PerceptualConfig:
    enabled: bool = setting(True, "use the VGG16 perceptual loss (false: pixel loss only, no VGG weights needed)")
    weights: str = setting("imagenet", "VGG16 weights: imagenet (torchvision's cache file), a path to a VGG16 state "
                           "dict, or random (smoke runs only)")
    imagenet_normalize: bool = setting(False, "normalise images with ImageNet statistics before VGG16 "
                                       "(the reference does not)")


@dataclass(frozen=True)
class LossConfig:
    pixel_weight: float = setting(1.0, "weight of the pixel MSE", at_least=0)
    perceptual_weight: float = setting(1.0, "weight of the VGG16 perceptual loss", at_least=0)
    perceptual: PerceptualConfig = section(PerceptualConfig)
    separation_weight: float = setting(0.0, "weight of the term that pushes each face's points apart (0: off, the "
                                       "paper's objective; docs/experiments.md, 'Training from scratch')",
                                       at_least=0)
    separation_bandwidth: float = setting(0.125, "Gaussian width of the separation term, fraction of the image "
                                          "side", above=0)
    equivariance_weight: float = setting(0.0, "weight of the term that makes x's points, mapped into x' by the "
                                         "augmentation, meet x''s (0: off)", at_least=0)
    concentration_weight: float = setting(0.0, "weight of the term that keeps each point's softmax map peaked "
                                          "(its variance; 0: off)", at_least=0)


@dataclass(frozen=True)
class TrainConfig:
    objective: Objective = setting("all", "Table I row: all (the paper's), baseline (SAIC), inter, cycle")
    aux_source: AuxSource = setting("permute", "auxiliary subject's heatmaps: permute = H(x)[perm]; third_pass = "
                                    "the reference's extra detector pass")
    batch_size: int = setting(32, "images per step and process", at_least=1)
    lr_fan: float = setting(1e-3, "Adam learning rate of the detector", above=0)
    lr_gen: float = setting(1e-3, "Adam learning rate of the generator", above=0)
    betas: tuple[float, float] = setting((0.0, 0.9), "Adam betas", at_least=0, below=1)
    weight_decay: float = setting(5e-4, "Adam weight decay", at_least=0)
    step_size: int = setting(30, "StepLR period in epochs, stepped after each epoch", at_least=1)
    gamma: float = setting(0.1, "StepLR factor", above=0)
    grad_clip: float = setting(1.0, "max global L2 norm of each network's gradient (0: no clipping)", at_least=0)
    iters_per_epoch: int = setting(2500, "steps per epoch", at_least=1)
    epochs: int = setting(34, "epochs to train (34: the reference README's evaluated model)", at_least=1)
    max_steps: int = setting(0, "stop after this many steps (0: epochs * iters_per_epoch)", at_least=0)
    max_minutes: float = setting(0.0, "wall-time budget of one invocation: validate, save and stop (0: none)",
                                 at_least=0)
    decay_at_budget: float = setting(0.0, "when this fraction of train.max_minutes is spent and the learning rate "
                                     "has not decayed yet, take its first step_size decay now, so a slow machine "
                                     "still trains at the lower rate before the budget ends (0, or no max_minutes: "
                                     "off)", at_least=0, below=1)
    init_from: str = setting("", "warm start: a checkpoint (ours or imported) whose weights start a new run, with "
                             "fresh optimisers, schedule and step")

    @property
    def total_steps(self) -> int:
        """The run's last step: max_steps, or epochs * iters_per_epoch when max_steps is 0."""
        return self.max_steps or self.epochs * self.iters_per_epoch


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda, cuda:N or mps; under torchrun the local "
                          "rank's GPU")
    amp: Literal["none", "bf16"] = setting("none", "mixed precision: none, or bf16 autocast on the run's device "
                                          "(CUDA; on a CPU too, slower, to try the GPU path)")
    channels_last: bool = setting(False, "channels-last memory format (faster on recent GPUs)")
    compile: bool = setting(False, "torch.compile the model")
    sync_batchnorm: bool = setting(False, "under DDP: BatchNorm statistics over all processes")
    seed: int = setting(1000, "seed of python, numpy, torch and the data order", at_least=0)
    deterministic: bool = setting(False, "deterministic algorithms, no cudnn autotuning")
    threads: int = setting(0, "CPU threads of torch (0: torch's default)", at_least=0)


@dataclass(frozen=True)
class LogConfig:
    out_dir: str = setting("runs", "parent folder of the run folders")
    name: str = setting("", "run folder prefix (default: the config file's stem)")
    run_dir: str = setting("", "exact run folder instead of <out_dir>/<name>-<date>-<time>; must not hold a "
                           "checkpoint yet")
    save_init: bool = setting(False, "also save the untrained model as init.pt (the untrained-detector baseline)")
    log_every: int = setting(10, "steps between log.jsonl records", at_least=1)
    image_every: int = setting(1000, "steps between picture grids", at_least=1)
    checkpoint_every: int = setting(1000, "steps between checkpoints", at_least=1)
    keep_checkpoints: int = setting(3, "step_*.pt files kept besides last.pt and best.pt", at_least=0)
    tensorboard: bool = setting(False, "also log to TensorBoard (needs: pip install tensorboard)")
    progress: bool = setting(True, "show a progress bar")


@dataclass(frozen=True)
class ValidationConfig:
    enabled: bool = setting(True, "validation NME during training (best.pt keeps the lowest)")
    every: int = setting(2500, "steps between validations", at_least=1)
    root: str = setting("", "data root of the validation splits (default: data.root)")
    fit_split: str = setting("", "split the regressor is fitted on (default by data set: mafl-train, mtfl-train, "
                             "aflw-train)", choices=("",) + EVAL_SPLITS)
    eval_split: str = setting("", "split the NME is measured on (default: mtfl-val for mtfl, else the tail of "
                              "fit_split, disjoint)", choices=("",) + EVAL_SPLITS)
    num_fit: int = setting(1000, "images the regressor is fitted on", at_least=1)
    num_eval: int = setting(300, "images the NME is measured on", at_least=1)
    batch_size: int = setting(64, "images per detector pass during validation", at_least=1)
    reg: float = setting(1e-4, "ridge lambda, relative to the largest entry of X^T X", at_least=0)


@dataclass(frozen=True)
class RunConfig:
    """The whole config of a training run: one field per YAML section."""

    model: ModelConfig = section(ModelConfig)
    data: DataConfig = section(DataConfig)
    loss: LossConfig = section(LossConfig)
    train: TrainConfig = section(TrainConfig)
    runtime: RuntimeConfig = section(RuntimeConfig)
    log: LogConfig = section(LogConfig)
    validation: ValidationConfig = section(ValidationConfig)


def check_image_size(image_size: int, hourglass_depth: int, given_as: str) -> None:
    """Refuse a crop side the detector cannot take (`utils.geometry.input_size_multiple`).

    given_as: how the user gave the size, for the one-line error: 'data.image_size=24', '--image-size 24'.
    """
    multiple = input_size_multiple(hourglass_depth)
    if image_size % multiple:
        raise UserError(f"{given_as}: expected a multiple of {multiple} (4 times 2^model.hourglass_depth, "
                        f"{hourglass_depth})")
