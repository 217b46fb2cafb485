"""Time the few-shot table at MAFL sizes on random data (the budget is one minute on a laptop CPU).

    python -m bench.fewshot                 # 18997 train, 1000 test, K=10, 10 repeats, fwd + bwd
    python -m bench.fewshot --k 50 --modes fwd

Runs `utils.evaluation.protocol.run_fewshot` (the code path of the real evaluation) on synthetic detections:
annotated faces jittered around a mean shape and K detected points that are a fixed linear function
of them plus noise. It then times the whole `eval_regressor.main` (tables, files, figures) on the
same data written to a temporary folder. Run it from the repository root (`-m` puts the root on the
import path). Exit status 1 if the few-shot table exceeds --budget seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import eval_regressor
from utils.evaluation.detections import Detections, save_detections
from utils.evaluation.protocol import EvalConfig, run_fewshot

MEAN_FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2)


def synthetic_split(n: int, k: int, seed: int, split: str) -> Detections:
    """Random but learnable detections for one split: (n, k, 2) detected, (n, 5, 2) annotated, 128-px crop."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(2 * k, 10)) / 10  # shared by all splits: (2K, 10)
    annotated = MEAN_FACE_XY_PX + rng.normal(scale=4.0, size=(n, 5, 2))  # (n, 5, 2)
    detected = 64 + (annotated.reshape(n, 10) - 64) @ mixing.T  # (n, 2K), a linear function ...
    detected = detected.reshape(n, k, 2) + rng.normal(scale=0.5, size=(n, k, 2))  # ... plus noise
    return Detections(
        path=f"<synthetic {split}>",
        detected_xy_px=detected.astype(np.float32),
        annotated_xy_px=annotated.astype(np.float32),
        names=np.array([f"{split}-{i:06d}.jpg" for i in range(n)]),  # splits share no image
        split=split,
        checkpoint="synthetic",
        settings={"seed": seed},
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=18997, help="training images (MAFL-train after exclusions)")
    p.add_argument("--n-test", type=int, default=1000, help="test images (MAFL-test)")
    p.add_argument("--k", type=int, default=10, help="detected landmarks; try 30 or 50 for the larger models")
    p.add_argument("--repeats", type=int, default=10, help="draws per few-shot size")
    p.add_argument("--modes", default="fwd,bwd", help="comma-separated regression directions to time")
    p.add_argument("--budget", type=float, default=60.0, help="seconds allowed for the few-shot table")
    args = p.parse_args(argv)

    train = synthetic_split(args.n_train, args.k, seed=1, split="mafl-train")
    test = synthetic_split(args.n_test, args.k, seed=2, split="mafl-test")
    cfg = EvalConfig(train_path=Path("-"), test_path=Path("-"), out_dir=Path("-"), repeats=args.repeats)
    total = 0.0
    for mode in args.modes.split(","):
        start = time.perf_counter()
        rows = run_fewshot(train, test, mode, cfg)
        seconds = time.perf_counter() - start
        total += seconds
        fits = sum(len(row.errors) for row in rows)
        print(f"{mode}: {fits} fits over sizes {list(cfg.sizes)} in {seconds:.2f} s; "
              f"NME at 'all' {100 * rows[-1].errors.mean():.2f} %")

    with tempfile.TemporaryDirectory() as tmp:
        for d in (train, test):
            save_detections(Path(tmp) / f"{d.split}.npz", detected_xy_px=d.detected_xy_px,
                            annotated_xy_px=d.annotated_xy_px, names=d.names, split=d.split,
                            checkpoint=d.checkpoint, settings=d.settings)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the report itself is not the point here
            status = eval_regressor.main(["--dir", tmp, "--dataset", "mafl", "--mode", "both",
                                          "--repeats", str(args.repeats), "--out", f"{tmp}/eval"])
        end_to_end = time.perf_counter() - start
    print(f"few-shot table ({args.modes}): {total:.2f} s (budget {args.budget:.0f} s); "
          f"eval_regressor.main end to end (both modes, files, figures): {end_to_end:.2f} s")
    return 1 if status != 0 or total > args.budget else 0


if __name__ == "__main__":
    sys.exit(main())
