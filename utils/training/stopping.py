"""Stopping a training run cleanly on a signal: Ctrl-C (SIGINT), and SIGTERM as `timeout`, SLURM (at the
end of a job's time or on pre-emption), `docker stop` and `kill` send it.

While the loop runs, either signal only sets a flag; after the step in flight the loop saves a checkpoint,
prints the command that continues the run and exits with 128 + the signal's number (130, 143), as a shell
reports a process killed by it. A second Ctrl-C interrupts at once, without saving. Under torchrun the
flag is reduced over the ranks after every step, so all of them stop at the same step even when the
signal reached only some. DataLoader workers ignore both signals (`ignore_stop_signals`): SLURM and a
terminal signal the whole process group, and a worker that died first would crash the main process
before it could save; the main process shuts its workers down itself.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as dist

from utils.training import collectives

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """From `install()` to `restore()`, SIGINT and SIGTERM ask the run to stop at the next step boundary
    instead of killing it; `restore()` puts the previous handlers back. Outside the main thread (where Python
    cannot set handlers) it installs nothing."""

    def __init__(self) -> None:
        self.signum = 0  # the first stop signal received, 0 for none
        self._previous: dict[int, object] = {}

    @classmethod
    def install(cls) -> StopSignals:
        stop = cls()
        if threading.current_thread() is threading.main_thread():
            stop._previous = {s: signal.signal(s, stop._handle) for s in STOP_SIGNALS}
        return stop

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: now
        self.signum = self.signum or signum

    def requested(self, distributed: bool, device: torch.device) -> int:
        """The stop signal's number (0: carry on), the same on every rank: under DDP the highest of the
        ranks' (a collective: every rank must call it after every step)."""
        if not distributed:
            return self.signum
        flag = torch.tensor([self.signum], dtype=torch.int32, device=device)
        collectives.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: the worker ignores SIGINT and SIGTERM and lives until the main process,
    which handles them, shuts it down."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def stop_message(signum: int, step: int, run_dir: Path, saved: bool) -> str:
    """The line (after a line break, to leave a progress bar) a run stopped by a signal ends with: what
    stopped it, the checkpoint saved or not, and the command that continues the run."""
    what = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}.get(
        signum, f"stopped by signal {signum}")
    done = f"saved {run_dir / 'last.pt'}" if saved else "stopped at once, nothing saved"
    return f"\n{what} at step {step}: {done}; continue with python train.py --resume {run_dir}"
