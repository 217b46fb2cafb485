"""The processes and clocks of a training run: torchrun ranks, threads, seeds, the wall-time budget, and the
end-of-run check that every rank holds the same weights."""

from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass
from time import monotonic
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils.device import resolve_device
from utils.run_config import RuntimeConfig, TrainConfig
from utils.training import collectives


@dataclass
class Dist:
    """This process's place among torchrun's: rank, world size, local rank (1 process: 0, 1, 0)."""

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


def autocast(runtime: RuntimeConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The mixed-precision context of the forward pass: with `runtime.amp=bf16`, bfloat16 autocast on the
    run's own device (CUDA, or the CPU, so that a CPU run exercises the path a GPU run takes), else none."""
    if runtime.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_text(runtime: RuntimeConfig, device: torch.device) -> str:
    """What `autocast` does, for the run header: 'bf16 autocast on cpu', or 'none' (float32 throughout)."""
    return f"bf16 autocast on {device.type}" if runtime.amp == "bf16" else "none"


def wrap_for_training(model: torch.nn.Module, runtime: RuntimeConfig, device: torch.device, d: Dist
                      ) -> torch.nn.Module:
    """What the training step calls: the model under DDP (with SyncBatchNorm if asked) when several processes
    run, then torch.compile'd if asked. Checkpoints and validation keep using the unwrapped model."""
    if d.enabled:
        if runtime.sync_batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if runtime.compile:
        model = torch.compile(model)
    return model


class WallClock:
    """The wall-time budget of one invocation (`train.max_minutes`) and the point of it where the first
    learning-rate decay is brought forward (`train.decay_at_budget`); rank 0's clock decides for all ranks."""

    def __init__(self, train: TrainConfig, device: torch.device, d: Dist) -> None:
        start = monotonic()
        budget_s = 60 * train.max_minutes if train.max_minutes > 0 else math.inf
        self.deadline = start + budget_s
        self.decay_deadline = start + budget_s * train.decay_at_budget if budget_s < math.inf \
            and train.decay_at_budget > 0 else math.inf  # no budget: the step schedule alone
        self.device, self.d = device, d

    def out_of_time(self) -> bool:
        return self._past(self.deadline)

    def decay_due(self) -> bool:
        return self._past(self.decay_deadline)

    def _past(self, deadline: float) -> bool:
        if deadline == math.inf:
            return False
        flag = torch.tensor([float(monotonic() > deadline)], device=self.device)
        if self.d.enabled:
            collectives.broadcast(flag, src=0)
        return bool(flag.item())


def jump_to_first_decay(schedulers: list[torch.optim.lr_scheduler.StepLR]) -> None:
    """Move each StepLR schedule ahead to its first decay: learning rates x gamma, epoch count at step_size.

    Later decays then come step_size epochs after this one; the schedulers' state (checkpointed)
    records the jump, so a resumed run neither repeats nor loses it.
    """
    for scheduler in schedulers:
        for group in scheduler.optimizer.param_groups:
            group["lr"] *= scheduler.gamma
        scheduler.last_epoch = scheduler.step_size


def take_budget_decay(schedulers: list[torch.optim.lr_scheduler.StepLR], train: TrainConfig, step: int,
                      progress: Any, log: Any) -> None:
    """Take the first learning-rate decay now (`train.decay_at_budget`): the schedules, a line on the
    progress bar (a tqdm) and a log.jsonl record (a `run_log.RunLog`)."""
    jump_to_first_decay(schedulers)
    progress.write(f"train.decay_at_budget={train.decay_at_budget:g} of the time budget reached at step {step}: "
                   f"learning rate x {train.gamma:g} now")
    log.write({"step": step, "event": "decay_at_budget", "lr_fan": schedulers[0].optimizer.param_groups[0]["lr"]})


def ranks_in_sync(model: torch.nn.Module, d: Dist) -> bool:
    """Gather a per-tensor checksum of every rank's parameters; True if all ranks agree exactly.

    BatchNorm running statistics are left out: each rank updates them from its own batch, and DDP
    overwrites them with rank 0's at every forward (rank 0's are the ones checkpointed).
    """
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    if dist.get_backend() == "gloo":
        sums = sums.cpu()
    gathered = [torch.zeros_like(sums) for _ in range(d.world_size)]
    collectives.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)
