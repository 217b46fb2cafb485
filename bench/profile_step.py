"""Where a training step's time goes, phase by phase, for any run config (issue: sharper points on two cores).

    python -m bench.profile_step --config configs/mtfl_cpu.yaml data.root=/data/MTFL    # the chosen 64-px step
    python -m bench.profile_step --config configs/mtfl_cpu.yaml data.root=/data/MTFL data.image_size=32 \
        model.heatmap_s=2 model.gen_res_blocks=2 runtime.channels_last=false --threads 1 --steps 20  # the old 32 px
    python -m bench.profile_step ... --variant channels_last --variant compile   # time variants beside the base

The paper-size step (128 px, VGG16 loss) is timed by `python -m bench.step`.
Builds the run's data, model, loss and optimisers as train.py does (`train.train_step` is timed whole for
each variant) and splits the base step into phases, in milliseconds per step (median over --steps timed
steps after --warmup):
- data: one batch of two-view pairs made in this process (what a loader worker pays per batch; with
  `data.num_workers` >= 1 it runs beside the step, on another core if one is free);
- detector / generator forward: the FAN's and the generator's (encoder + decoder) forward calls, summed
  over the step (2 FAN passes and 4 generator passes for objective "all"), through forward hooks;
- losses: the reconstruction loss and the landmark terms;
- backward, optimiser (gradient clipping and both Adam steps), and the rest (Python, soft-argmax, heatmap
  rendering, indexing), the step's wall time minus the phases above.
Variants: `channels_last` (runtime.channels_last), `compile` (runtime.compile, with its compile time),
`bf16` (runtime.amp=bf16). Numbers depend on the machine and its load: run it alone, and compare variants
within one run (they are timed in alternating rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import build_training_pairs  # noqa: E402
from losses import add_landmark_terms, build_reconstruction_loss  # noqa: E402
from model import build_model, derangement  # noqa: E402
from train import build_optimizers, train_step  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.run_config import RunConfig  # noqa: E402
from utils.training.runtime import autocast  # noqa: E402

VARIANTS = {"channels_last": {"channels_last": True}, "compile": {"compile": True}, "bf16": {"amp": "bf16"}}


class PhaseClock:
    """Sums wall time per named phase; forward hooks time whole module calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[int, float] = {}

    def hook(self, module: torch.nn.Module, name: str) -> None:
        def before(mod, _inputs):
            self._started[id(mod)] = time.perf_counter()

        def after(mod, _inputs, _output):
            self.seconds[name] += time.perf_counter() - self._started.pop(id(mod))

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def add(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] += now - since
        return now


def make_batch(dataset, batch_size: int, offset: int) -> dict:
    """One batch of two-view pairs from the dataset, collated as the loader does."""
    items = [dataset[(offset + i) % len(dataset)] for i in range(batch_size)]
    return torch.utils.data.default_collate(items)


def build_step(cfg: RunConfig):
    """(model, loss_fn, optimizers) for `cfg`, as train.prepare builds them (no checkpoint, no DDP)."""
    model, _ = build_model(cfg.model, from_checkpoint=True)
    perceptual = cfg.loss.perceptual
    loss_fn = build_reconstruction_loss(perceptual=perceptual.enabled, weights=perceptual.weights,
                                        imagenet_normalize=perceptual.imagenet_normalize,
                                        pixel_weight=cfg.loss.pixel_weight, perceptual_weight=cfg.loss.perceptual_weight)
    if cfg.runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizers, _ = build_optimizers([model.detector, model.generator], cfg.train)
    return model, loss_fn, optimizers


def phase_step(model, loss_fn, optimizers, batch: dict, aux: torch.Tensor, cfg: RunConfig, clock: PhaseClock) -> None:
    """train.train_step's work, with a clock read between its phases (forward phases come from hooks)."""
    t = time.perf_counter()
    x, x_prime = batch["x"], batch["x_prime"]
    with autocast(cfg.runtime, torch.device("cpu")):
        rec = model(x, x_prime, aux, cfg.train.objective, cfg.train.aux_source)
        t = clock.add("forward (all)", t)
        terms = loss_fn(rec.outputs, rec.targets)
    terms = add_landmark_terms(terms, rec, batch["x_to_x_prime"], x.shape[-1], cfg.loss)
    t = clock.add("losses", t)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    t = clock.add("backward", t)
    for opt in optimizers:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.train.grad_clip)
        opt.step()
    clock.add("optimiser", t)


def profile_phases(cfg: RunConfig, dataset, steps: int, warmup: int) -> dict[str, float]:
    """Mean ms per step for each phase over `steps` steps after `warmup`."""
    model, loss_fn, optimizers = build_step(cfg)
    clock = PhaseClock()
    clock.hook(model.detector, "detector forward")
    clock.hook(model.generator, "generator forward")
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            clock.seconds.clear()
            total = 0.0
        t0 = time.perf_counter()
        batch = make_batch(dataset, cfg.train.batch_size, i * cfg.train.batch_size)
        t = clock.add("data", t0)
        phase_step(model, loss_fn, optimizers, batch, derangement(cfg.train.batch_size, gen), cfg, clock)
        total += time.perf_counter() - t
    ms = {name: 1000 * s / steps for name, s in clock.seconds.items()}
    ms["rest (Python, soft-argmax, rendering)"] = ms.pop("forward (all)") - ms["detector forward"] - ms["generator forward"]
    ms["step without data"] = 1000 * total / steps
    return ms


def time_variants(cfg: RunConfig, dataset, names: list[str], steps: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median s/step of train.train_step for the base config and each variant, timed in alternating rounds;
    returns name -> (median seconds, set-up + warm-up seconds, which holds a compile)."""
    configs = {"base": cfg} | {name: dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, **VARIANTS[name]))
                               for name in names}
    built, setup, times = {}, {}, defaultdict(list)
    gen = torch.Generator().manual_seed(0)
    batch = make_batch(dataset, cfg.train.batch_size, 0)
    for name, c in configs.items():
        t = time.perf_counter()
        model, loss_fn, optimizers = build_step(c)
        step_model = torch.compile(model) if c.runtime.compile else model
        for _ in range(warmup):
            train_step(step_model, loss_fn, optimizers, batch, derangement(c.train.batch_size, gen), c, torch.device("cpu"))
        built[name] = (step_model, loss_fn, optimizers, c)
        setup[name] = time.perf_counter() - t
    for _ in range(steps):
        for name, (step_model, loss_fn, optimizers, c) in built.items():
            t = time.perf_counter()
            train_step(step_model, loss_fn, optimizers, batch, derangement(c.train.batch_size, gen), c, torch.device("cpu"))
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), setup[name]) for name in configs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", required=True, help="run config YAML, e.g. configs/mtfl_cpu.yaml")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, as for train.py")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one of two side-by-side runs)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS),
                   help="also time train.train_step with this runtime change (repeatable)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(RunConfig, args.config, args.overrides)
        torch.set_num_threads(args.threads)
        torch.manual_seed(cfg.runtime.seed)
        dataset = build_training_pairs(cfg.data, cfg.runtime.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config} {' '.join(args.overrides)}: {cfg.data.image_size} px, batch {cfg.train.batch_size}, "
          f"{args.threads} thread(s), {args.steps} timed steps after {args.warmup}")
    phases = profile_phases(cfg, dataset, args.steps, args.warmup)
    whole = phases["step without data"] + phases["data"]
    print("| phase | ms/step | share of step + data |\n|---|---|---|")
    for name, ms in phases.items():
        print(f"| {name} | {ms:.1f} | {100 * ms / whole:.0f} % |")
    if args.variant:
        print("\n| variant | s/step (train_step) | set-up + warm-up s |\n|---|---|---|")
        for name, (seconds, setup) in time_variants(cfg, dataset, args.variant, args.steps, args.warmup).items():
            print(f"| {name} | {seconds:.3f} | {setup:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
