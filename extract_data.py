"""Run a trained detector over evaluation splits and save the points for eval_regressor.py.

    python extract_data.py --checkpoint runs/celeba-20261121-120000 --data-root /data/celeba \\
        --splits mafl-train,mafl-test

writes `<run folder>/detections/<split>.npz` per split: detected points and annotated points, both
(x, y) in evaluation-crop pixels at the 128-px scale, image names, the checkpoint's identity and
the settings used (format: `utils/evaluation/detections.py`). `eval_regressor.py` reads these files.

BatchNorm: `--bn-mode eval` (default) uses the running statistics, so a face's points do not
depend on the other faces of its batch. `--bn-mode train` reproduces the reference, which never
calls eval(): batch statistics over batches of `--batch-size` (30 in the reference). The two give
different numbers; report which one you used.

Ctrl-C stops it with one line; the splits written before stay, and the line names those left to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from datasets import build_eval_dataset
from datasets.synthetic import is_synthetic_root
from model import load_model
from utils.checkpoint import OUTPUT_RULE, check_output, checkpoint_identity, file_sha256, find_checkpoint
from utils.dataset_registry import EVAL_SPLITS
from utils.device import resolve_device
from utils.errors import UserError, exit_code_of
from utils.evaluation.detections import save_detections
from utils.extraction import BN_MODES, extract_points
from utils.files import check_writable_folder, os_reason
from utils.run_config import check_image_size

PREVIEW_IMAGES = 16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, epilog=OUTPUT_RULE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file or a run folder (its last.pt; pass best.pt explicitly to use the best one)")
    p.add_argument("--data-root", required=True,
                   help="root of the data set in its original layout: the CelebA folder (for mafl-*, celeba), "
                        "aflw_release-2 (aflw-*), the MTFL folder (mtfl-*), or an image folder (folder)")
    p.add_argument("--splits", default="mafl-train,mafl-test",
                   help=f"comma-separated splits to extract, from: {', '.join(EVAL_SPLITS)} (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: <run folder>/detections)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace <split>.npz files already in --out (refused without it: extract again on purpose)")
    p.add_argument("--batch-size", type=int, default=30,
                   help="faces per batch (default 30, the reference's); matters only with --bn-mode train")
    p.add_argument("--workers", type=int, default=4, help="data loading processes (default: %(default)s)")
    p.add_argument("--bn-mode", choices=BN_MODES, default="eval",
                   help="BatchNorm statistics: eval = running statistics (default, batch-independent); "
                        "train = batch statistics as the reference does (changes the numbers)")
    p.add_argument("--tight", type=int, default=None,
                   help="crop margin around the annotated points, percent of their extent (default: the "
                        "checkpoint's data.tight, i.e. the margin it was trained with; 70 in the paper's protocol)")
    p.add_argument("--image-size", type=int, default=None,
                   help="crop size fed to the detector (default: the size the model was trained at)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="drop listed images that are missing or do not decode (counted and reported) instead of stopping")
    p.add_argument("--include-reference-three", action="store_true",
                   help="keep the three MAFL training images the reference drops without explanation "
                        "(031524, 179577, 139803)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each split (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    written: list[Path] = []  # filled by run(): the .npz files done, for the line after a Ctrl-C
    try:
        return exit_code_of(run, parse_args(argv), written)
    except KeyboardInterrupt:
        done = ", ".join(str(path) for path in written) or "none"
        print(f"\ninterrupted (Ctrl-C); written before it, whole: {done}", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, written: list[Path] | None = None) -> list[Path]:
    """Extract every split of --splits; returns the files written, each also appended to `written` as it is."""
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = [s for s in splits if s not in EVAL_SPLITS]
    if unknown or not splits:
        raise UserError(f"--splits {args.splits!r}: unknown split(s) {unknown}; expected some of {', '.join(EVAL_SPLITS)}")
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0),
                                 ("--tight", args.tight, 0), ("--image-size", args.image_size, 1),
                                 ("--limit", args.limit, 1)):
        if value is not None and value < minimum:
            raise UserError(f"{flag} {value}: expected >= {minimum}")
    device = resolve_device(args.device)
    cv2.setNumThreads(1)  # an OpenCV thread pool does not survive fork() into the loader workers
    ckpt_file = find_checkpoint(args.checkpoint)
    model, model_cfg, ckpt = load_model(ckpt_file, device)
    image_size = args.image_size or ckpt["config"]["data"]["image_size"]
    tight = args.tight if args.tight is not None else ckpt["config"]["data"]["tight"]
    check_image_size(image_size, model_cfg.hourglass_depth, f"--image-size {image_size}")
    checkpoint_sha256 = file_sha256(ckpt_file)
    identity = checkpoint_identity(ckpt_file, checkpoint_sha256)
    out_dir = Path(args.out) if args.out else ckpt_file.parent / "detections"
    for split in splits:
        check_output(out_dir / f"{split}.npz", "--out", [("--checkpoint", ckpt_file)], args.overwrite)
    check_writable_folder(out_dir, "the detections (--out)")  # before the work, leaving nothing behind
    datasets = {split: build_eval_dataset(split, args.data_root, image_size=image_size, tight=tight,
                                          skip_bad_images=args.skip_bad_images,
                                          exclude_reference_three=not args.include_reference_three, limit=args.limit)
                for split in splits}  # every data root and list is checked before anything is written
    print(f"checkpoint {identity} (step {ckpt['step']}, K={model_cfg.num_points}) on {device}, BatchNorm {args.bn_mode}, "
          f"{image_size} px crops with margin {tight}")
    written = [] if written is None else written
    for split, dataset in datasets.items():  # out_dir is made with the first file written
        result = extract_points(model, dataset, batch_size=args.batch_size, num_workers=args.workers, device=device,
                                bn_mode=args.bn_mode, progress=not args.quiet, preview=PREVIEW_IMAGES)
        settings = {"data_root": str(args.data_root), "synthetic": is_synthetic_root(args.data_root), "tight": tight,
                    "image_size": image_size,
                    "bn_mode": args.bn_mode, "batch_size": args.batch_size, "num_points": model_cfg.num_points,
                    "exclude_reference_three": not args.include_reference_three, "limit": args.limit,
                    "step": int(ckpt["step"]), "checkpoint_sha256": checkpoint_sha256}
        try:
            path = save_detections(out_dir / f"{split}.npz", detected_xy_px=result["detected"],
                                   annotated_xy_px=result["annotated"], names=result["names"], split=split,
                                   checkpoint=identity, settings=settings, preview_images=result["preview_images"])
        except OSError as exc:  # a full disk: the files written before stay whole (atomic writes)
            left = ",".join(splits[len(written):])
            raise UserError(f"{exc.filename or out_dir}: cannot write ({os_reason(exc)}); the splits written before "
                            f"are intact; make room, then run again with --splits {left}") from None
        print(f"{split}: {len(result['names'])} faces -> {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
