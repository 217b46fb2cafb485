"""A resumable, rank-aware data order.

Pass p over the data set visits a permutation drawn from (seed, p); rank r of W processes takes
every W-th index of it, in batches of `batch_size`, and a short last batch is dropped. The
position (pass, batch) is all a checkpoint needs to continue the data order exactly, with any
number of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from utils.checkpoint import RunState
from utils.run_config import RunConfig
from utils.training.stopping import ignore_stop_signals


def batches_per_pass(num_items: int, batch_size: int, world_size: int = 1) -> int:
    return (num_items // world_size) // batch_size


class ResumableBatchSampler:
    """Yields lists of indices for one pass, starting at batch `start_batch`.

    Args:
        num_items: data set size; batch_size: per-process batch; seed: data-order seed;
        data_pass: which pass over the data (selects the permutation); start_batch: batches of
        this pass already consumed; rank, world_size: this process's share.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int, data_pass: int, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.data_pass, self.start_batch = seed, data_pass, start_batch
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(batches_per_pass(self.num_items, self.batch_size, self.world_size) - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.data_pass)
        order = torch.randperm(self.num_items, generator=generator)[self.rank::self.world_size]
        for b in range(self.start_batch, batches_per_pass(self.num_items, self.batch_size, self.world_size)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()


def training_batches(dataset, cfg: RunConfig, state: RunState, d, device: torch.device) -> Iterator[dict]:
    """The training batches from the run's position on, pass after pass; `state.data_pass` and
    `state.batch_in_pass` follow (the caller counts the batches it takes within a pass).

    dataset: a `datasets.pairs.TwoViewDataset` (its `set_epoch` selects each pass's augmentation);
    d: the process's `utils.training.runtime.Dist`. Loader workers ignore SIGINT and SIGTERM: the main
    process stops the run (`utils.training.stopping`) and shuts them down when the pass ends in any way.
    """
    while True:
        dataset.set_epoch(state.data_pass)
        sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, seed=cfg.runtime.seed,
                                        data_pass=state.data_pass, start_batch=state.batch_in_pass, rank=d.rank,
                                        world_size=d.world_size)
        loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                                 pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals))
        try:
            yield from loader
        finally:  # however the pass ends (its end, an error, the run stopping): the workers go now
            shut_down_workers(loader)
        state.data_pass, state.batch_in_pass = state.data_pass + 1, 0


def shut_down_workers(loader: Iterator) -> None:
    """Stop a DataLoader iterator's worker processes now, not whenever it is garbage-collected.

    The workers ignore SIGTERM (`ignore_stop_signals`), so they must not outlive the pass: an iterator kept
    alive by a reference cycle (an exception raised from a worker makes one) would leave them to
    multiprocessing's exit handler, which stops children with SIGTERM and then waits for them for ever.
    """
    shutdown = getattr(loader, "_shutdown_workers", None)  # absent when data.num_workers is 0
    if shutdown is not None:
        shutdown()
