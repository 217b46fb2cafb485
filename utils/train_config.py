"""The training config (`train.py --config FILE section.key=value ...`) as frozen dataclasses, one per section.

Defaults are the paper's; `utils/config_keys.py` says what each key means and which values it accepts, and
`utils/config.py` loads YAML files and overrides into these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model import AuxSource, ModelConfig, Objective


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "celeba"  # celeba | synthetic | mafl-train | aflw | mtfl | folder
    root: str = ""  # the data set's folder in its original layout; set it on the command line
    image_size: int = 128
    angle: float = 15.0  # rotation std of x' in degrees; x uses twice it (spec 3.1)
    tight: int = 70  # crop margin, percent of the landmark extent
    tight_jitter: float = 4.0
    flip: bool = False
    num_workers: int = 4
    skip_bad_images: bool = False


@dataclass(frozen=True)
class PerceptualConfig:
    enabled: bool = True
    weights: str = "imagenet"  # imagenet (torchvision cache) | /path/to/vgg16.pth | random (smoke runs)
    imagenet_normalize: bool = False  # the reference feeds [0, 1] images unnormalised


@dataclass(frozen=True)
class LossConfig:
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    # Terms for training from scratch (0 = off, the paper's objective). README, "Training from scratch".
    separation_weight: float = 0.0  # pushes each face's K points apart (losses.separation_loss)
    separation_bandwidth: float = 0.125  # its Gaussian width, fraction of the image side
    equivariance_weight: float = 0.0  # x's points mapped into x' must meet x''s (losses.equivariance_loss)


@dataclass(frozen=True)
class OptimConfig:
    objective: Objective = "all"  # all | baseline | inter | cycle (Table I rows)
    aux_source: AuxSource = "permute"  # permute: H(x)[perm]; third_pass: the reference's extra detector pass
    batch_size: int = 32  # per process
    lr_fan: float = 1e-3
    lr_gen: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.9)
    weight_decay: float = 5e-4
    step_size: int = 30  # StepLR, in epochs, stepped after each epoch
    gamma: float = 0.1
    grad_clip: float = 1.0  # max global L2 norm per network; 0 turns clipping off
    iters_per_epoch: int = 2500
    epochs: int = 34  # the reference README evaluates epoch 33, i.e. after 34 epochs
    max_steps: int = 0  # stop after this many iterations (0: epochs * iters_per_epoch)
    max_minutes: float = 0.0  # wall-time budget of this invocation: validate, save and stop (0: none)
    decay_at_budget: float = 0.0  # fraction of max_minutes after which the first decay comes if not yet (0: off)
    init_from: str = ""  # warm start: another run's checkpoint's weights, fresh optimisers/schedule/step

    @property
    def total_steps(self) -> int:
        """The run's last step: max_steps, or epochs * iters_per_epoch when max_steps is 0."""
        return self.max_steps or self.epochs * self.iters_per_epoch


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)
    amp: Literal["none", "bf16"] = "none"  # bf16 autocast on CUDA
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    sync_batchnorm: bool = False  # under DDP: BatchNorm statistics over all processes
    seed: int = 1000
    deterministic: bool = False  # deterministic algorithms, no cudnn autotuning
    threads: int = 0  # CPU threads for torch (0: torch's default)


@dataclass(frozen=True)
class LogConfig:
    out_dir: str = "runs"
    name: str = ""  # run folder prefix (default: the config file's stem)
    run_dir: str = ""  # exact run folder instead of <out_dir>/<name>-<date>-<time>; must not hold a run yet
    save_init: bool = False  # also save the untrained model as init.pt (the "untrained detector" baseline)
    log_every: int = 10
    image_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # step_*.pt files kept besides last.pt and best.pt
    tensorboard: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ValidationConfig:
    enabled: bool = True
    every: int = 2500  # steps
    root: str = ""  # default: data.root
    fit_split: str = ""  # default by data set: mafl-train, mtfl-train, aflw-train
    eval_split: str = ""  # default: mtfl-val for mtfl, else the tail of the fit split (disjoint)
    num_fit: int = 1000
    num_eval: int = 300
    batch_size: int = 64
    reg: float = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
