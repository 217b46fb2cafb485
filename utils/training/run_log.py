"""What a training run tells its user: the header, the progress line, log.jsonl (and TensorBoard), and the
validation lines with their collapse warnings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from utils.checkpoint import git_sha
from utils.errors import UserError
from utils.files import atomic_write
from utils.metrics import collapse_warning, format_collapse
from utils.plot_run import write_curves_quietly
from utils.run_config import RunConfig, TrainConfig
from utils.training.runtime import Dist, precision_text


def import_summary_writer() -> type:
    """TensorBoard's SummaryWriter, or a one-line error naming the package when it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("log.tensorboard=true needs the tensorboard package: pip install tensorboard "
                        "(or set log.tensorboard=false)") from None
    return SummaryWriter


class RunLog:
    """Rank 0's log: one JSON record per line in log.jsonl, mirrored to TensorBoard when it is on.

    A new run (resume_step None) replaces the log.jsonl of a start that failed before its first checkpoint.
    A resumed run appends, after dropping the records of steps past its checkpoint's `resume_step`: a run
    killed after its last checkpoint logged steps that the resumed run does again, and each step must
    appear once. Other ranks get a RunLog without a path, which writes nothing. A failed write (a full
    disk) raises an OSError naming log.jsonl.
    """

    def __init__(self, path: Path | None, *, resume_step: int | None = None, writer_cls: type | None = None) -> None:
        self.file = self.writer = None
        self.path = path
        if path is not None:
            if resume_step is not None:
                drop_records_after(path, resume_step)
            self.file = open(path, "w" if resume_step is None else "a")
            self.writer = writer_cls(path.parent / "tensorboard") if writer_cls is not None else None

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def add_image(self, tag: str, image_rgb: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_rgb, step, dataformats="HWC")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            write_curves_quietly(self.path.parent)  # RUN/curves.png, whatever ended the run
        if self.writer is not None:
            self.writer.close()


def drop_records_after(path: Path, step: int) -> None:
    """Rewrite log.jsonl (atomically) without the records of steps after `step`, and without a line torn by
    a kill in mid-write; a log without such records is left untouched."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if kept != lines:
        atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def done_line(step: int, run_dir: Path, best_val_nme: float) -> str:
    """The line a run that reached its last step ends with."""
    best = f"; best validation NME {best_val_nme:.2f}%" if math.isfinite(best_val_nme) else ""
    return f"done: {step} steps; checkpoints in {run_dir}{best}"


def print_run_header(cfg: RunConfig, run_dir: Path, device: torch.device, d: Dist, num_images: int,
                     parameter_counts: list[tuple[int, int]], load_report: str, step: int) -> None:
    """The lines a run starts with. parameter_counts: (trainable, total) of the detector, then the generator."""
    (det_trainable, det_total), (_, gen_total) = parameter_counts
    print(f"run folder {run_dir}  (git {git_sha()})")
    print(f"device {device}, {d.world_size} process(es), batch {cfg.train.batch_size} per process = "
          f"{cfg.train.batch_size * d.world_size} per step; {num_images} training images")
    print(f"detector {det_trainable:,} trainable of {det_total:,}; generator {gen_total:,}; FAN init "
          f"{cfg.model.fan_init}" + (f" ({load_report})" if load_report else ""))
    print(f"objective {cfg.train.objective}, {cfg.train.total_steps} steps" + (f", resuming at step {step}" if step else ""))
    print(f"mixed precision: {precision_text(cfg.runtime, device)}; channels_last {cfg.runtime.channels_last}; "
          f"torch.compile {cfg.runtime.compile}")


def window_record(step: int, window: list[dict[str, float]], elapsed_s: float, optimizers: list,
                  train: TrainConfig, world_size: int) -> dict:
    """The log.jsonl record of the steps since the last one: mean loss terms, learning rates, throughput."""
    return {"step": step, "epoch": step / train.iters_per_epoch,
            **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
            "lr_fan": optimizers[0].param_groups[0]["lr"], "lr_gen": optimizers[1].param_groups[0]["lr"],
            "images_per_s": len(window) * train.batch_size * world_size / max(elapsed_s, 1e-9)}


def validation_record(step: int, val_nme: float, stats: dict, best_nme: float, val_fraction: float) -> dict:
    """The log.jsonl record of a validation: NME, the collapse measures (`val_` keys), the best NME so far."""
    return {"step": step, "val_nme": val_nme,
            **{f"val_{key}": value for key, value in stats.items() if key != "num_points"},
            "best_val_nme": best_nme, "val_seconds_fraction": val_fraction}


def report_validation(progress: tqdm, step: int, val_nme: float, best_nme: float, stats: dict) -> dict[str, str]:
    """Write a validation's line (and a collapse warning if due); return the progress bar's postfix."""
    progress.write(f"step {step}: validation NME {val_nme:.2f}% (best {best_nme:.2f}%); {format_collapse(stats)}")
    if warning := collapse_warning(stats):
        progress.write(f"warning: step {step}: {warning}")
    return {"val_nme": f"{val_nme:.2f}", "spread": f"{stats['spread']:.2f}",
            "distinct": f"{stats['distinct']}/{stats['num_points']}", "lock": f"{stats['part_lock']:.2f}"}


def non_finite_message(step: int, terms: str, run_dir: Path) -> str:
    """The error line of a run stopped by a non-finite loss, naming the step, the terms and the last checkpoint."""
    last = run_dir / "last.pt"
    return (f"error: non-finite loss at step {step} ({terms}); stopping. Last good checkpoint: "
            f"{last if last.exists() else 'none yet'}")


def log_ranks_in_sync(in_sync: bool, d: Dist, run_dir: Path, step: int) -> None:
    """Under DDP, rank 0 prints whether all ranks hold the same weights and appends it to log.jsonl."""
    print(f"weights identical on all {d.world_size} ranks: {in_sync}")
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "ranks_in_sync": in_sync, "world_size": d.world_size}) + "\n")
