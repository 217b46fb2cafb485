"""Time one full training step of our model against a reference-equivalent step, same run, same device.

    python -m bench.step                          # CPU: batch 32, 1 warm-up + 3 timed steps per variant
    python -m bench.step --batch-size 8           # a quicker CPU run
    python -m bench.step --device cuda --compile  # GPU: also time torch.compile'd ours

A step is forward + backward + gradient clipping to norm 1 per network + two Adam steps (betas
(0, 0.9), weight decay 5e-4; one optimiser for the FAN, one for the generator, from `train.build_optimizers`
with the paper's defaults), objective "all" (the paper's core block) with pixel + VGG16 perceptual loss,
on random images. The variants:

- ours: `train.train_step`, the step train.py runs: auxiliary heatmaps by permuting H(x) (2 FAN passes),
  `ReconstructionLoss` (outputs in one batched VGG forward, targets in one more under no_grad, VGG frozen);
  on CUDA also bf16 autocast and channels_last.
- reference: what the reference does per iteration: a third FAN pass on the permuted
  batch, four separate VGG calls VGG(X), VGG(x), VGG(X_P), VGG(x') with detached target features,
  VGG parameters left with requires_grad=True (their gradients accumulate, nobody zeroes them), fp32.
- ours+compile (`--compile`): ours with the model and the loss wrapped in torch.compile.

Every variant starts from the same seed, so the networks, inputs and derangement are identical.
A throwaway batch-2 step first takes the one-time process costs (thread pools, kernel-library
set-up). Then each variant is built and warmed up in turn; its first warm-up step is also where its
peak memory and FLOPs are measured. The timed steps run in rounds, one step of every variant per
round (the order rotating), so that load from other processes on a shared machine hits all variants
alike. s/step is the median over the rounds; every step is printed with the load average.
GFLOP/step (torch.utils.flop_counter; n/a for compiled variants) does not depend on load at all.

Peak memory is the rise over the variant's build and warm-up, so it counts its weights, gradients,
Adam moments and activations (the other variants' resting state is excluded):
- CUDA: torch.cuda.max_memory_allocated (tensors only, not the caching allocator's reserve);
- CPU (Linux): the rise of the resident-set high-water mark (VmHWM, reset via /proc/self/clear_refs)
  over the resident set at the start, after returning free heap to the OS (glibc malloc_trim). It
  counts everything the process touches (oneDNN scratch, allocator slack) and varies by ~100 MiB
  from run to run. getrusage's ru_maxrss is not used: it cannot be reset, so a later variant would
  hide under an earlier one's peak. "n/a" where /proc is missing.
Run it from the repository root (`-m` puts the root on the import path).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from losses import PerceptualFeatures, ReconstructionLoss, load_vgg16_features
from model import FAN, Generator, LandmarkAutoencoder, build_detector, derangement
from train import build_optimizers, train_step
from utils.errors import UserError
from utils.run_config import RunConfig, RuntimeConfig, TrainConfig

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of running the training step."""

    name: str
    aux_source: str  # "permute" (ours) or "third_pass" (reference)
    reference_loss: bool  # four separate VGG calls, VGG parameters requiring grad
    fast_math: bool  # bf16 autocast + channels_last (applied on CUDA only)
    compile: bool = False


@dataclasses.dataclass
class Result:
    """What was measured for one variant."""

    variant: str
    peak_bytes: int | None
    flops: int | None
    step_seconds: list[float] = dataclasses.field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.step_seconds)


def reference_loss(vgg: PerceptualFeatures, outputs: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Spec 2 as the reference computes it: per pair, pixel MSE + four tap MSEs, one VGG call per image set."""
    total = torch.zeros((), device=outputs[0].device)
    for out, target in zip(outputs, targets):
        taps_out, taps_target = vgg(out), vgg(target)
        total = total + F.mse_loss(out, target)
        total = total + sum(F.mse_loss(a, b.detach()) for a, b in zip(taps_out, taps_target))
    return total


def build_step(variant: Variant, args: argparse.Namespace, device: torch.device,
               x: Tensor, x_prime: Tensor, aux_index: Tensor) -> Callable[[], None]:
    """Networks, loss and optimisers for `variant`, returned as a closure running one training step.

    Both variants take their optimisers from `train.build_optimizers` (the paper's defaults of the `train:`
    config section). "ours" runs `train.train_step` itself, as train.py does; "reference" runs the
    reference's step (third FAN pass, four VGG calls, VGG gradients kept, fp32) with the same clipping.
    """
    torch.manual_seed(args.seed)
    pretrained = FAN(num_points=args.num_points).state_dict() if args.fan_init != "scratch" else None
    detector, _ = build_detector(num_points=args.num_points, init=args.fan_init, pretrained=pretrained)
    model = LandmarkAutoencoder(detector=detector, generator=Generator(num_points=args.num_points)).to(device)
    vgg = PerceptualFeatures(load_vgg16_features(args.vgg_weights)).to(device)
    fast = variant.fast_math and device.type == "cuda"
    cfg = RunConfig(train=TrainConfig(aux_source=variant.aux_source),
                    runtime=RuntimeConfig(amp="bf16" if fast else "none", channels_last=fast))
    optimizers, _ = build_optimizers([model.detector, model.generator], cfg.train)
    if fast:
        model, vgg = model.to(memory_format=torch.channels_last), vgg.to(memory_format=torch.channels_last)
    if not variant.reference_loss:
        forward, loss_fn = model, ReconstructionLoss(vgg)
        if variant.compile:
            forward, loss_fn = torch.compile(model), torch.compile(loss_fn)
        identity = torch.eye(2, 3).expand(x.shape[0], 2, 3)  # the landmark terms are off; the step reads the key
        batch = {"x": x, "x_prime": x_prime, "x_to_x_prime": identity}

        def our_step() -> None:
            train_step(forward, loss_fn, optimizers, batch, aux_index, cfg, device)

        return our_step
    vgg.requires_grad_(True)

    def reference_step() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        rec = model(x, x_prime, aux_index, cfg.train.objective, variant.aux_source)
        reference_loss(vgg, rec.outputs, rec.targets).backward()
        for net in (model.detector, model.generator):
            nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
        for opt in optimizers:
            opt.step()

    return reference_step


def _proc_kib(field: str) -> int:
    """A memory field (VmRSS, VmHWM) of this process from /proc/self/status, in KiB."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE).group(1))


def _start_memory(device: torch.device) -> int | None:
    """Release freed memory, reset the peak counter, return the baseline in bytes (None: not measurable)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        PROC_CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current resident set
        return _proc_kib("VmRSS") * 1024
    except OSError:
        return None


def _peak_memory(device: torch.device, baseline: int | None) -> int | None:
    if baseline is None:
        return None
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - baseline
    return _proc_kib("VmHWM") * 1024 - baseline


def benchmark(variants: list[Variant], args: argparse.Namespace, device: torch.device,
              x: Tensor, x_prime: Tensor, aux_index: Tensor) -> list[Result]:
    """Build and warm up each variant (measuring memory and FLOPs), then time them in interleaved rounds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    build_step(variants[0], args, device, x[:2, :, :64, :64], x_prime[:2, :, :64, :64],
               torch.tensor([1, 0], device=device))()  # the throwaway step
    steps, results = [], []
    for variant in variants:
        baseline = _start_memory(device)
        step = build_step(variant, args, device, x, x_prime, aux_index)
        counter = FlopCounterMode(display=False)
        with contextlib.nullcontext() if variant.compile else counter:
            step()
        for _ in range(args.warmup - 1):
            step()
        sync()
        flops = None if variant.compile else counter.get_total_flops()
        steps.append(step)
        results.append(Result(variant.name, _peak_memory(device, baseline), flops))
        print(f"{variant.name}: built and warmed up", flush=True)
    for round_index in range(args.steps):
        order = list(range(round_index % len(steps), len(steps))) + list(range(round_index % len(steps)))
        for i in order:
            start = time.perf_counter()
            steps[i]()
            sync()
            results[i].step_seconds.append(time.perf_counter() - start)
        load = f" (load average {os.getloadavg()[0]:.1f})" if device.type == "cpu" else ""
        print(f"round {round_index + 1}: " + ", ".join(f"{r.variant} {r.step_seconds[-1]:.3f} s" for r in results)
              + load, flush=True)
    return results


def markdown_table(results: list[Result], batch_size: int) -> str:
    """One row per variant; the last column is its time over the reference's (below 1: faster)."""
    reference = next(r for r in results if r.variant == "reference")
    rows = ["| variant | s/step (median) | images/s | peak memory (MiB) | GFLOP/step | time / reference |",
            "|---|---|---|---|---|---|"]
    for r in results:
        memory = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.0f}"
        flops = "n/a" if r.flops is None else f"{r.flops / 1e9:.0f}"
        rows.append(f"| {r.variant} | {r.seconds:.3f} | {batch_size / r.seconds:.2f} | {memory} | {flops} | "
                    f"{r.seconds / reference.seconds:.2f} |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto picks CUDA when available; force cpu to compare with a CPU-only machine")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per step (the paper's 32); lower it (e.g. 8) for a quick CPU run")
    p.add_argument("--image-size", type=int, default=128,
                   help="image side, a multiple of 64; change it only to study scaling (paper: 128)")
    p.add_argument("--num-points", type=int, default=10, help="landmarks K; 30 or 50 for the paper's larger models")
    p.add_argument("--fan-init", choices=("incremental", "scratch"), default="incremental",
                   help="FAN form: incremental (the paper's, from random 'pretrained' weights) or scratch")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per variant, at least 1 (default: 1 on CPU, 5 on CUDA); raise it with --compile")
    p.add_argument("--steps", type=int, default=None,
                   help="timed rounds, one step per variant each (default: 3 on CPU, 20 on CUDA); "
                        "raise it for steadier numbers")
    p.add_argument("--vgg-weights", default="random",
                   help="random (default: timing does not depend on the values), imagenet, or a VGG16 state-dict path")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile'd ours; meant for CUDA (compiling on CPU takes minutes)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, one per core); on a machine shared with "
                        "other jobs, 1 thread per free core gives steadier times")
    p.add_argument("--seed", type=int, default=0, help="seed for networks, inputs and the derangement")
    args = p.parse_args(argv)
    if args.batch_size < 2:
        p.error("--batch-size must be at least 2 (the auxiliary subject is another image of the batch)")
    if args.image_size < 64 or args.image_size % 64:
        p.error("--image-size must be a multiple of 64 (the FAN's 4-level hourglass on the S/4 heatmap)")
    if args.warmup is not None and args.warmup < 1:
        p.error("--warmup must be at least 1 (the first warm-up step measures memory and FLOPs)")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    args.warmup = args.warmup or (5 if use_cuda else 1)
    args.steps = args.steps or (20 if use_cuda else 3)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if use_cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"K={args.num_points}, FAN {args.fan_init}, VGG {args.vgg_weights}; "
          f"{args.warmup} warm-up steps per variant, {args.steps} timed rounds", flush=True)

    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x, x_prime = torch.rand(shape, generator=gen).to(device), torch.rand(shape, generator=gen).to(device)
    aux_index = derangement(args.batch_size, gen).to(device)
    variants = [Variant("ours", "permute", reference_loss=False, fast_math=True),
                Variant("reference", "third_pass", reference_loss=True, fast_math=False)]
    if args.compile:
        variants.append(Variant("ours+compile", "permute", reference_loss=False, fast_math=True, compile=True))
    try:
        results = benchmark(variants, args, device, x, x_prime, aux_index)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ours, reference = results[:2]
    print(f"\nours / reference: time {ours.seconds / reference.seconds:.2f}x, "
          f"images/s {reference.seconds / ours.seconds:.2f}x"
          + ("  (ours: bf16 autocast + channels_last)" if use_cuda else "") + "\n")
    print(f"{name}, batch {args.batch_size}, {args.image_size}x{args.image_size}\n")
    print(markdown_table(results, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
