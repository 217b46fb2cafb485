"""Train the landmark detector and generator (the paper's inter- and intra-subject objective).

    python train.py --config configs/celeba.yaml data.root=/data/celeba [section.key=value ...]
    python train.py --resume runs/celeba-20261121-120000          # continue exactly where it stopped
    torchrun --standalone --nproc_per_node 4 train.py --config configs/celeba.yaml data.root=/data/celeba

A run writes to `runs/<name>-<date>-<time>/`: config.yaml, log.jsonl (a JSON record per log step and validation),
PNG grids of landmarks and reconstructions, and self-contained checkpoints written atomically (step_XXXXXXXX.pt,
last.pt, best.pt by validation NME). `--resume` restores weights, optimisers, schedulers, step, data order and RNG:
a resumed run ends with the same weights as an uninterrupted one. One run at a time holds a run folder (RUN/.lock).
A non-finite loss stops the run naming the step; Ctrl-C and SIGTERM (timeout, SLURM, docker stop) stop it after the
step in flight, saving a checkpoint; a full disk stops it with the command that continues it. `train.max_minutes`
gives one invocation a wall-time budget (validate, save, stop; `--resume` continues), within which
`train.decay_at_budget` brings the first learning-rate decay forward on a slow machine.
`python train.py --print-config` prints every config key with its default, what it accepts and what it does.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from datasets import build_training_pairs
from losses import add_landmark_terms, build_reconstruction_loss
from model import LandmarkAutoencoder, build_model, count_parameters, derangement
from utils.checkpoint import RunState, atomic_torch_save, link_last_checkpoint, prune_step_checkpoints, training_state
from utils.config import check_values, commented_yaml, markdown_table, to_dict
from utils.errors import UserError, one_line
from utils.pretrained import pretrained_fan_weights
from utils.run_config import RunConfig, TrainConfig
from utils.training import collectives
from utils.training.pictures import save_training_grid
from utils.training.resume import finished_line, restore_run
from utils.training.run_folder import (as_write_failure, check_config, check_run_folder_writable, checked_fingerprint,
                                       open_run_folder, resolve_config)
from utils.training.run_lock import RunFolderLock
from utils.training.run_log import (RunLog, done_line, import_summary_writer, log_ranks_in_sync, non_finite_message,
                                    print_run_header, window_record)
from utils.training.runtime import (Dist, WallClock, autocast, configure_runtime, ranks_in_sync, setup_distributed,
                                    take_budget_decay, wrap_for_training)
from utils.training.sampler import batches_per_pass, training_batches
from utils.training.stopping import StopSignals, stop_message
from utils.training.validation import validate_and_report, validation_sets
from utils.training.warm_start import init_from_checkpoint


class NonFiniteLoss(Exception):
    pass


def build_optimizers(networks: list[torch.nn.Module], train: TrainConfig
                     ) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.StepLR]]:
    """One Adam and one StepLR per network (detector, generator), with their own learning rates."""
    optimizers = [torch.optim.Adam(net.parameters(), lr=lr, betas=train.betas, weight_decay=train.weight_decay)
                  for net, lr in zip(networks, (train.lr_fan, train.lr_gen))]
    return optimizers, [torch.optim.lr_scheduler.StepLR(opt, train.step_size, train.gamma) for opt in optimizers]


def train_step(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
               batch: dict, aux_index: torch.Tensor, cfg: RunConfig, device: torch.device, distributed: bool = False
               ) -> tuple[dict[str, float], Any]:
    """One iteration: forward, loss, backward, clipping per network (each optimiser's parameters), both
    optimiser steps. Returns the loss terms and the forward's `model.Reconstructions`."""
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    x = batch["x"].to(device, non_blocking=True).contiguous(memory_format=fmt)  # (B, 3, S, S)
    x_prime = batch["x_prime"].to(device, non_blocking=True).contiguous(memory_format=fmt)
    with autocast(cfg.runtime, device):
        rec = model(x, x_prime, aux_index, cfg.train.objective, cfg.train.aux_source)
        terms = loss_fn(rec.outputs, rec.targets)
    terms = add_landmark_terms(terms, rec, batch["x_to_x_prime"], x.shape[-1], cfg.loss)
    values = torch.stack([t.detach().float() for t in terms.values()])
    finite = torch.isfinite(values).all().float()
    if distributed:
        collectives.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite.item() < 1:
        raise NonFiniteLoss(", ".join(f"{k}={v:.4g}" for k, v in zip(terms, values.tolist())))
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    if cfg.train.grad_clip > 0:
        for opt in optimizers:
            torch.nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]],
                                           cfg.train.grad_clip)
    for opt in optimizers:
        opt.step()
    return dict(zip(terms, values.tolist())), rec


@dataclass
class Run:
    """Everything a training run is made of, built by `prepare`; `state` holds its counters."""

    cfg: RunConfig
    d: Dist
    device: torch.device
    dataset: Any
    val_sets: Any
    model: LandmarkAutoencoder  # the unwrapped model: checkpoints, validation and pictures use it
    train_model: torch.nn.Module  # what the step calls: the model, under DDP and torch.compile if on
    loss_fn: torch.nn.Module
    optimizers: list
    schedulers: list
    run_dir: Path
    log: RunLog  # writes nothing on ranks other than 0
    lock: RunFolderLock  # rank 0's hold on run_dir, released when main returns
    fingerprint: str  # of the training data (utils.checkpoint.data_fingerprint), saved in every checkpoint
    state: RunState = field(default_factory=RunState)
    val_postfix: dict = field(default_factory=dict)  # the last validation's measures, on the progress bar

    def save(self, name: str) -> Path:
        state = training_state(to_dict(self.cfg), self.model, self.optimizers, self.schedulers, self.state,
                               self.cfg.train.iters_per_epoch, self.fingerprint)
        atomic_torch_save(state, self.run_dir / name)
        return self.run_dir / name

    def checkpoint(self) -> None:
        link_last_checkpoint(self.save(f"step_{self.state.step:08d}.pt"))
        prune_step_checkpoints(self.run_dir, self.cfg.log.keep_checkpoints)

    def stop(self, signum: int, save: bool = True) -> int:
        """Rank 0 saves a checkpoint and prints how to continue; the exit code of a run stopped by `signum`."""
        if self.d.is_main:
            if save:
                self.checkpoint()
            print(stop_message(signum, self.state.step, self.run_dir, saved=save), file=sys.stderr)
        return 128 + signum


def prepare(cfg: RunConfig, ckpt: dict | None) -> Run:
    """Check the config; build the processes, data, model, loss and optimisers; restore or start the run."""
    check_config(cfg)
    summary_writer = import_summary_writer() if cfg.log.tensorboard else None  # before anything is written
    d, device = setup_distributed(cfg.runtime.device)
    check_run_folder_writable(cfg, ckpt, d)
    configure_runtime(cfg.runtime, device, d)
    dataset = build_training_pairs(cfg.data, cfg.runtime.seed)
    if batches_per_pass(len(dataset), cfg.train.batch_size, d.world_size) < 1:
        raise UserError(f"data set {cfg.data.root} has {len(dataset)} images: fewer than one batch of "
                        f"{cfg.train.batch_size} per process; lower train.batch_size")
    fingerprint = checked_fingerprint(dataset.records, ckpt, cfg.data.root)  # a resumed run's data must be its own
    val_sets = validation_sets(cfg) if d.is_main else None
    fresh = ckpt is None and not cfg.train.init_from
    model, report = build_model(cfg.model, pretrained_fan=pretrained_fan_weights(cfg.model) if fresh else None,
                                from_checkpoint=not fresh)
    perceptual = cfg.loss.perceptual
    loss_fn = build_reconstruction_loss(perceptual=perceptual.enabled, weights=perceptual.weights,
                                        imagenet_normalize=perceptual.imagenet_normalize,
                                        pixel_weight=cfg.loss.pixel_weight, perceptual_weight=cfg.loss.perceptual_weight)
    model.to(device, memory_format=torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format)
    loss_fn.to(device)
    optimizers, schedulers = build_optimizers([model.detector, model.generator], cfg.train)
    state = RunState() if ckpt is None else restore_run(ckpt, cfg, model, optimizers, schedulers, d.is_main)
    if ckpt is None and cfg.train.init_from:  # weights only: optimisers, schedules and step stay fresh
        init_from_checkpoint(model, cfg.train.init_from, cfg.model, announce=d.is_main)
    train_model = wrap_for_training(model, cfg.runtime, device, d)
    run_dir, lock, log = open_run_folder(cfg, d, ckpt, summary_writer)  # locked before anything is written
    if d.is_main:
        counts = [(count_parameters(net, True), count_parameters(net)) for net in (model.detector, model.generator)]
        print_run_header(cfg, run_dir, device, d, len(dataset), counts, report.summary() if report else "", state.step)
    return Run(cfg, d, device, dataset, val_sets, model, train_model, loss_fn, optimizers, schedulers, run_dir, log,
               lock, fingerprint, state)


def train(run: Run) -> int:
    """The loop: a step, then whatever falls due at that step (log record, picture, schedule, validation,
    checkpoint), until the last step or the time budget. Returns the exit code."""
    cfg, state, main_rank = run.cfg, run.state, run.d.is_main
    total_steps = cfg.train.total_steps
    progress = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
                    disable=not (main_rank and cfg.log.progress))
    window, window_start, seconds = [], time.perf_counter(), {"train": 0.0, "val": 0.0}
    clock = WallClock(cfg.train, run.device, run.d)
    run.model.train()
    stop = StopSignals.install()  # SIGINT, SIGTERM: stop after the step in flight
    try:
        if main_rank and cfg.log.save_init and state.step == 0:
            run.save("init.pt")
        for batch in training_batches(run.dataset, cfg, state, run.d, run.device):
            t0 = time.perf_counter()
            aux_gen = torch.Generator().manual_seed((cfg.runtime.seed * 1_000_003 + state.step) * 1009 + run.d.rank)
            aux_index = derangement(batch["x"].shape[0], aux_gen)
            try:
                values, rec = train_step(run.train_model, run.loss_fn, run.optimizers, batch, aux_index, cfg,
                                         run.device, run.d.enabled)
            except NonFiniteLoss as exc:
                print(non_finite_message(state.step + 1, str(exc), run.run_dir), file=sys.stderr)
                run.log.write({"step": state.step + 1, "event": "non_finite_loss", "detail": str(exc)})
                return 1
            state.step += 1
            state.batch_in_pass += 1
            seconds["train"] += time.perf_counter() - t0
            window.append(values)
            progress.update(1)
            log_step = state.step % cfg.log.log_every == 0
            if log_step and clock.out_of_time():
                total_steps = state.step  # the last step: validate and checkpoint below, then stop
                progress.write(f"train.max_minutes={cfg.train.max_minutes:g} reached at step {state.step}; stopping")
            if log_step and run.schedulers[0].last_epoch < cfg.train.step_size and clock.decay_due():
                take_budget_decay(run.schedulers, cfg.train, state.step, progress, run.log)
            if log_step or state.step == total_steps:
                record = window_record(state.step, window, time.perf_counter() - window_start, run.optimizers,
                                       cfg.train, run.d.world_size)
                run.log.write(record)
                progress.set_postfix(loss=f"{record['total']:.4f}", img_s=f"{record['images_per_s']:.0f}",
                                     **run.val_postfix)
                window, window_start = [], time.perf_counter()
            after_step(run, batch, rec, aux_index, progress, seconds, last=state.step == total_steps)
            if state.step >= total_steps:
                break
            if signum := stop.requested(run.d.enabled, run.device):
                return run.stop(signum)
    except KeyboardInterrupt:  # a second Ctrl-C: at once, without saving
        return run.stop(signal.SIGINT, save=False)
    except OSError as exc:  # a full disk: one line; the checkpoints written before are intact
        raise as_write_failure(exc, run.run_dir) from None
    finally:
        stop.restore()
        progress.close()
        run.log.close()
    return 0


def after_step(run: Run, batch: dict, rec, aux_index: torch.Tensor, progress: tqdm, seconds: dict[str, float],
               last: bool) -> None:
    """Rank 0's picture grid, the epoch's schedule step, validation and checkpoint when they fall due."""
    cfg, state, main_rank = run.cfg, run.state, run.d.is_main
    if main_rank and state.step % cfg.log.image_every == 0:
        grid = save_training_grid(run.run_dir / f"train_{state.step:08d}.png", batch, rec, aux_index,
                                  cfg.model.num_points)
        run.log.add_image("train_grid", grid, state.step)
    epoch_end = state.step % cfg.train.iters_per_epoch == 0
    if epoch_end:
        for scheduler in run.schedulers:  # after the optimiser steps (the reference calls it before)
            scheduler.step()
    if main_rank and run.val_sets is not None and (state.step % cfg.validation.every == 0 or last):
        improved, run.val_postfix = validate_and_report(run.model, run.val_sets, cfg, run.device, state, run.log,
                                                        progress, seconds)
        if improved:
            run.save("best.pt")
    if main_rank and (state.step % cfg.log.checkpoint_every == 0 or epoch_end or last):
        run.checkpoint()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config, e.g. configs/celeba.yaml (configs/synthetic.yaml for a CPU run)")
    p.add_argument("--resume", metavar="RUN_OR_FILE", help="continue a run: its folder (newest checkpoint) or a "
                   "checkpoint file; overrides apply (train.epochs=40 trains longer, log.run_dir=NEW branches into "
                   "NEW) or are refused naming the key; a finished run prints 'already done' and writes nothing")
    p.add_argument("--overwrite", action="store_true", help="with --resume of an older step file: continue in its "
                   "folder, overwriting the later checkpoints, best.pt and log records (refused without it)")
    p.add_argument("--print-config", nargs="?", const="yaml", choices=("yaml", "markdown"),
                   help="print the resolved config (defaults, --config, overrides) with a comment per key and exit; "
                        "'markdown' prints docs/configs.md's table of keys instead")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, e.g. data.root=/data/celeba train.lr_fan=1e-4 runtime.amp=bf16")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, run = parse_args(argv), None
    try:
        cfg, ckpt = resolve_config(args)
        if args.print_config:
            check_values(cfg)
            print(markdown_table(cfg) if args.print_config == "markdown" else commented_yaml(cfg), end="")
            return 0
        if done := finished_line(cfg, ckpt):  # nothing to train, nothing written
            print(done)
            return 0
        run = prepare(cfg, ckpt)
        code = train(run)
        if code == 0 and run.d.enabled:
            in_sync = ranks_in_sync(run.model, run.d)
            if run.d.is_main:
                log_ranks_in_sync(in_sync, run.d, run.run_dir, run.state.step)
        if code == 0 and run.d.is_main:
            print(done_line(run.state.step, run.run_dir, run.state.best_val_nme))
        return code
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if run is not None:
            run.lock.release()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
