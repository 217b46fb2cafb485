"""Run a trained detector over evaluation splits and save the points for eval_regressor.py.

    python extract_data.py --checkpoint runs/celeba-20261121-120000 --data-root /data/celeba \\
        --splits mafl-train,mafl-test

writes `<run folder>/detections/<split>.npz` per split: detected points and annotated points, both
(x, y) in evaluation-crop pixels at the 128-px scale, image names, the checkpoint's identity and
the settings used (format: `utils/detections.py`). `eval_regressor.py` reads these files.

BatchNorm: `--bn-mode eval` (default) uses the running statistics, so a face's points do not
depend on the other faces of its batch. `--bn-mode train` reproduces the reference, which never
calls eval(): batch statistics over batches of `--batch-size` (30 in the reference). The two give
different numbers; report which one you used.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datasets import EVAL_SPLITS, build_eval_dataset
from utils.detections import save_detections
from model import HEATMAP_STRIDE, LandmarkAutoencoder
from utils.checkpoint import checkpoint_identity, file_sha256, find_checkpoint, load_model
from utils.errors import UserError, exit_code_of
from utils.geometry import heatmap_to_image_xy
from utils.visualize import rescale_points_px

EVAL_SCALE = 128  # saved points are in crop pixels of a 128 x 128 crop, whatever the model's size
PREVIEW_IMAGES = 16


DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str, key: str = "--device") -> torch.device:
    """The torch device named `name` (auto, cpu, cuda, cuda:N, mps), checked to exist on this machine.

    key: the option or config key that gave the name, for the one-line error.
    """
    if not DEVICE_NAME.fullmatch(name):
        raise UserError(f"{key} {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{key} {name!r}: CUDA is not available on this machine; use cpu or auto")
        count = torch.cuda.device_count()
        if int(name.partition(":")[2] or 0) >= count:
            raise UserError(f"{key} {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{key} {name!r}: MPS is not available on this machine; use cpu or auto")
    return torch.device(name)


@torch.no_grad()
def extract_points(model: LandmarkAutoencoder, dataset: Dataset, *, batch_size: int = 30, num_workers: int = 0,
                   device: torch.device | str = "cpu", bn_mode: str = "eval", progress: bool = True,
                   preview: int = 0) -> dict[str, np.ndarray]:
    """Detected and annotated points of every item of an evaluation-crop dataset, in order.

    Returns {"detected": (N, K, 2), "annotated": (N, 5, 2), both (x, y) crop pixels at the 128-px
    scale; "names": (N,) str; "preview_images": (min(preview, N), S, S, 3) uint8 RGB}.
    `bn_mode="train"` uses batch statistics (the reference's behaviour) without touching the
    model's running statistics. The model's train/eval state is restored afterwards.
    """
    if bn_mode not in ("eval", "train"):
        raise UserError(f"bn mode {bn_mode!r}: expected eval or train")
    was_training = model.training
    if bn_mode == "train":  # batch statistics; a copy absorbs the running-statistics updates
        model = copy.deepcopy(model).train()
    else:
        model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    detected, annotated, names, previews = [], [], [], []
    for batch in tqdm(loader, desc="extract", unit="batch", disable=not progress, leave=False):
        images = batch["image"].to(device, non_blocking=True)  # (B, 3, S, S)
        size = images.shape[-1]
        points_hm, _ = model.detect(images)  # (B, K, 2) heatmap pixels
        points_px = heatmap_to_image_xy(points_hm.float(), HEATMAP_STRIDE).cpu().numpy()  # crop pixels
        detected.append(rescale_points_px(points_px, (size, size), (EVAL_SCALE, EVAL_SCALE)))
        annotated.append(rescale_points_px(batch["points"].numpy(), (size, size), (EVAL_SCALE, EVAL_SCALE)))
        names.extend(batch["name"])
        if sum(len(p) for p in previews) < preview:
            previews.append((batch["image"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    if bn_mode == "eval":
        model.train(was_training)
    if not names:
        raise UserError("the split is empty: no image to extract points from")
    preview_images = np.concatenate(previews)[:preview] if previews else np.zeros((0, 1, 1, 3), np.uint8)
    return {"detected": np.concatenate(detected).astype(np.float32),
            "annotated": np.concatenate(annotated).astype(np.float32),
            "names": np.array(names), "preview_images": preview_images}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file or a run folder (its last.pt; pass best.pt explicitly to use the best one)")
    p.add_argument("--data-root", required=True,
                   help="root of the data set in its original layout: the CelebA folder (for mafl-*, celeba), "
                        "aflw_release-2 (aflw-*), the MTFL folder (mtfl-*), or an image folder (folder)")
    p.add_argument("--splits", default="mafl-train,mafl-test",
                   help=f"comma-separated splits to extract, from: {', '.join(EVAL_SPLITS)} (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: <run folder>/detections)")
    p.add_argument("--batch-size", type=int, default=30,
                   help="faces per batch (default 30, the reference's); matters only with --bn-mode train")
    p.add_argument("--workers", type=int, default=4, help="data loading processes (default: %(default)s)")
    p.add_argument("--bn-mode", choices=("eval", "train"), default="eval",
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
    return exit_code_of(run, parse_args(argv))


def run(args: argparse.Namespace) -> list[Path]:
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
    multiple = 4 * 2 ** model_cfg.hourglass_depth  # the hourglass halves the heatmap hourglass_depth times
    if image_size % multiple:
        raise UserError(f"--image-size {image_size}: expected a multiple of {multiple} for this checkpoint "
                        f"(4 times 2^model.hourglass_depth, {model_cfg.hourglass_depth})")
    checkpoint_sha256 = file_sha256(ckpt_file)
    identity = checkpoint_identity(ckpt_file, checkpoint_sha256)
    out_dir = Path(args.out) if args.out else ckpt_file.parent / "detections"
    datasets = {split: build_eval_dataset(split, args.data_root, image_size=image_size, tight=tight,
                                          skip_bad_images=args.skip_bad_images,
                                          exclude_reference_three=not args.include_reference_three, limit=args.limit)
                for split in splits}  # every data root and list is checked before anything is written
    print(f"checkpoint {identity} (step {ckpt['step']}, K={model_cfg.num_points}) on {device}, BatchNorm {args.bn_mode}, "
          f"{image_size} px crops with margin {tight}")
    written = []
    for split, dataset in datasets.items():  # out_dir is made with the first file written
        result = extract_points(model, dataset, batch_size=args.batch_size, num_workers=args.workers, device=device,
                                bn_mode=args.bn_mode, progress=not args.quiet, preview=PREVIEW_IMAGES)
        settings = {"data_root": str(args.data_root), "tight": tight, "image_size": image_size,
                    "bn_mode": args.bn_mode, "batch_size": args.batch_size, "num_points": model_cfg.num_points,
                    "exclude_reference_three": not args.include_reference_three, "limit": args.limit,
                    "step": int(ckpt["step"]), "checkpoint_sha256": checkpoint_sha256}
        path = save_detections(out_dir / f"{split}.npz", detected_xy_px=result["detected"],
                               annotated_xy_px=result["annotated"], names=result["names"], split=split,
                               checkpoint=identity, settings=settings, preview_images=result["preview_images"])
        print(f"{split}: {len(result['names'])} faces -> {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
