"""Detected points of a whole evaluation split (what extract_data.py saves and training validates on), and
`ordered_map`, the threads that read ahead of a detector (the faces of photos: the `inference` package).

Points are (x, y) in evaluation-crop pixels at the `EVAL_CROP_SIZE` scale (128 px), whatever size the
model sees, with the pixel-centre convention of utils/geometry.py.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from utils.errors import UserError
from utils.geometry import EVAL_CROP_SIZE, heatmap_to_image_xy
from utils.visualize import rescale_points_px

Item = TypeVar("Item")
Result = TypeVar("Result")

BN_MODES = ("eval", "train")


@torch.no_grad()
def extract_points(model: nn.Module, dataset: Dataset, *, batch_size: int = 30, num_workers: int = 0,
                   device: torch.device | str = "cpu", bn_mode: str = "eval", progress: bool = True,
                   preview: int = 0) -> dict[str, np.ndarray]:
    """Detected and annotated points of every item of an evaluation-crop dataset, in order.

    model: a `model.LandmarkAutoencoder` (anything with `detect(images) -> (points, heatmaps)`).
    Returns {"detected": (N, K, 2), "annotated": (N, 5, 2), both (x, y) crop pixels at the 128-px
    scale; "names": (N,) str; "preview_images": (min(preview, N), S, S, 3) uint8 RGB}.
    `bn_mode="train"` uses batch statistics (the reference's behaviour) without touching the
    model's running statistics. The model's train/eval state is restored afterwards.
    """
    if bn_mode not in BN_MODES:
        raise UserError(f"bn mode {bn_mode!r}: expected eval or train")
    was_training = model.training
    if bn_mode == "train":  # batch statistics; a copy absorbs the running-statistics updates
        model = copy.deepcopy(model).train()
    else:
        model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    detected, annotated, names, previews = [], [], [], []
    scale = (EVAL_CROP_SIZE, EVAL_CROP_SIZE)
    for batch in tqdm(loader, desc="extract", unit="batch", disable=not progress, leave=False):
        images = batch["image"].to(device, non_blocking=True)  # (B, 3, S, S)
        size = images.shape[-1]
        points_hm, _ = model.detect(images)  # (B, K, 2) heatmap pixels
        points_px = heatmap_to_image_xy(points_hm.float()).cpu().numpy()  # crop pixels
        detected.append(rescale_points_px(points_px, (size, size), scale))
        annotated.append(rescale_points_px(batch["points"].numpy(), (size, size), scale))
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


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int,
                ahead: int | None = None) -> Iterator[Result]:
    """`map(function, items)` computed by `workers` threads ahead of the caller, results in order.

    At most `ahead` (default 4 * workers) items are in flight. workers = 0 runs everything in the caller's
    thread. An exception is raised when its item's turn comes; the items not started are then cancelled.
    Threads suit work that releases the GIL (OpenCV's decoding, resizing and face search do).
    """
    if workers <= 0:
        yield from map(function, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= (ahead or 4 * workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
