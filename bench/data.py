"""Data-pipeline throughput: two-view samples per second per worker, and workers a GPU needs.

    python -m bench.data                          # synthetic CelebA-layout set in a temp dir
    python -m bench.data --root /data/celeba --gpu-images-per-s 1500

Prints the synthetic generator's speed (when it generates), two-view samples/s in-process
(num_workers=0) and through a DataLoader with a few workers, and the number of workers needed to
keep up with a GPU that consumes --gpu-images-per-s training samples (pairs) per second at
--batch-size. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, Subset

from datasets import build_train_dataset
from datasets.synthetic import generate
from utils.errors import UserError


def samples_per_second(dataset, num_samples: int, num_workers: int, batch_size: int) -> float:
    """Two-view samples per second reading the first num_samples items through a DataLoader."""
    loader = DataLoader(Subset(dataset, range(min(num_samples, len(dataset)))),
                        batch_size=batch_size, num_workers=num_workers)
    iterator = iter(loader)
    first = next(iterator)  # start-up (worker fork, first reads) is not timed
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["index"])
    elapsed = time.perf_counter() - start
    return count / elapsed if count else len(first["index"]) / max(elapsed, 1e-9)


def main(argv: list[str] | None = None) -> int:
    """Time the generator and the two-view pipeline; print the worker estimate."""
    parser = argparse.ArgumentParser(prog="python -m bench.data",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="CelebA-layout root to read (default: generate a synthetic set in a "
                             "temp dir). Point it at real data to measure real JPEG sizes")
    parser.add_argument("--kind", default="celeba", help="training data set kind (default celeba)")
    parser.add_argument("--num-images", type=int, default=600,
                        help="synthetic images to generate when --root is not given (default 600)")
    parser.add_argument("--samples", type=int, default=480,
                        help="two-view samples to time per setting (default 480)")
    parser.add_argument("--workers", default="0,2",
                        help="comma-separated DataLoader worker counts to time (default 0,2; "
                             "0 = in-process). Use up to the number of free cores")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--image-size", type=int, default=128, help="crop size (default 128)")
    parser.add_argument("--gpu-images-per-s", type=float, default=1000.0,
                        help="training samples (pairs) per second the GPU step consumes "
                             "(default 1000, i.e. about 31 steps/s at batch 32)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip listed images that are missing (needed for partial copies)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # one thread per process; also keeps fork()ed workers from deadlocking
    torch.set_num_threads(1)
    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        print(f"error: --workers={args.workers!r}: expected comma-separated integers",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as temporary:
        root = args.root
        if root is None:
            start = time.perf_counter()
            root = generate(Path(temporary) / "synthetic", args.num_images, seed=0)
            rate = args.num_images / (time.perf_counter() - start)
            print(f"synthetic generation: {rate:.0f} images/s (one core, incl. JPEG writes)")
        try:
            dataset = build_train_dataset(args.kind, root, image_size=args.image_size,
                                          skip_bad_images=args.skip_bad_images)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"data: {args.kind} at {root}, {len(dataset)} images, crops {args.image_size}px, "
              f"batch {args.batch_size}")
        rates = {}
        for workers in worker_counts:
            rate = samples_per_second(dataset, args.samples, workers, args.batch_size)
            rates[workers] = rate / max(workers, 1)
            print(f"num_workers={workers}: {rate:7.1f} two-view samples/s total, "
                  f"{rates[workers]:7.1f} per worker process")
    steps = args.gpu_images_per_s / args.batch_size
    print(f"to feed {args.gpu_images_per_s:.0f} samples/s ({steps:.1f} steps/s at batch "
          f"{args.batch_size}), with one free core per worker:")
    for workers, per_worker in rates.items():
        source = "in-process rate" if workers == 0 else f"per-worker rate at num_workers={workers}"
        print(f"  {math.ceil(args.gpu_images_per_s / per_worker)} workers "
              f"(from the {source}, {per_worker:.0f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
