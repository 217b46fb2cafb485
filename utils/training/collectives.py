"""The collectives of a multi-process run (torchrun), returning only once the backend holds none of their tensors.

gloo runs a collective on a worker thread, which keeps the work, and with it the tensors, a moment after
`wait()` has returned. When Python drops its last reference first, the tensor's Python object is freed
later by that worker thread, which takes the GIL to do so; if the interpreter is shutting down by then (the
collective was the run's last), the thread is ended inside a destructor and the process aborts with
"terminate called without an active exception" after a run that finished. Waiting until the worker has
let go keeps Python the last owner. NCCL's tensors are released by its own watchdog and are left alone.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.distributed as dist

RELEASE_TIMEOUT_S = 5.0  # a worker descheduled longer than this only brings back the race, never a hang


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType) -> None:
    """In place, as `dist.all_reduce`."""
    _run(lambda: dist.all_reduce(tensor, op=op, async_op=True), [tensor])


def broadcast(tensor: torch.Tensor, src: int) -> None:
    """In place, as `dist.broadcast`."""
    _run(lambda: dist.broadcast(tensor, src=src, async_op=True), [tensor])


def all_gather(outputs: list[torch.Tensor], tensor: torch.Tensor) -> None:
    """Into `outputs` (one tensor per rank), as `dist.all_gather`."""
    _run(lambda: dist.all_gather(outputs, tensor, async_op=True), [tensor, *outputs])


def _run(start: Callable[[], dist.Work], tensors: list[torch.Tensor]) -> None:
    work = start()
    work.wait()
    del work  # the handle holds the tensors too
    if dist.get_backend() == "gloo":
        wait_until_sole_owner(tensors, RELEASE_TIMEOUT_S)


def wait_until_sole_owner(tensors: list[torch.Tensor], timeout_s: float) -> bool:
    """Poll until no reference to each tensor is left but its Python object's (a use count of 1); False if
    `timeout_s` passed first."""
    deadline = time.monotonic() + timeout_s
    while any(t._use_count() > 1 for t in tensors):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True
