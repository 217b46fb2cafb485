"""Extraction throughput: detector images/s over evaluation crops, as extract_data.py runs it.

    python -m bench.extract                      # paper-size FAN (K=10, 128 px) on synthetic faces, CPU
    python -m bench.extract --device cuda --batch-size 128 --amp

Prints images/s for the detector alone (tensors already in memory) and for the whole extraction
(decode, crop, resize, detect) through `extract_points` with `--workers` loader processes.
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import cv2
import torch

from datasets import build_eval_dataset
from datasets.synthetic import generate
from model import build_model
from utils.device import resolve_device
from utils.extraction import extract_points
from utils.run_config import ModelConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="CelebA-layout folder (default: 600 synthetic faces in a temporary folder)")
    p.add_argument("--images", type=int, default=600, help="images to extract (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=30, help="default 30, the reference's extraction batch")
    p.add_argument("--workers", type=int, default=2, help="loader processes (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--num-points", type=int, default=10, help="K (default %(default)s)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or generate(tmp, args.images, seed=0)
        dataset = build_eval_dataset("mafl-train", root, limit=args.images)
        model, _ = build_model(ModelConfig(num_points=args.num_points, fan_init="scratch"))
        model.to(device).eval()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
        images = torch.rand(args.batch_size, 3, 128, 128, device=device)
        with torch.no_grad(), autocast:
            model.detect(images)  # warm-up
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            start, reps = time.perf_counter(), max(1, 300 // args.batch_size)
            for _ in range(reps):
                model.detect(images)
            sync()
            detector_rate = reps * args.batch_size / (time.perf_counter() - start)
            start = time.perf_counter()
            extract_points(model, dataset, batch_size=args.batch_size, num_workers=args.workers, device=device,
                           progress=False)
            sync()
            pipeline_rate = len(dataset) / (time.perf_counter() - start)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.workers} workers, K={args.num_points}, amp={args.amp and device.type == 'cuda'}")
    print("| what | images/s |\n|---|---|")
    print(f"| detector only (128 px, paper-size FAN) | {detector_rate:.1f} |")
    print(f"| whole extraction ({len(dataset)} images) | {pipeline_rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
