"""Evaluation crops (the reference's evaluation pre-processing): each face cut out around its ground-truth points, no randomness.

Angle 0; the landmark-driven box with margin `tight` (70 in LI) from `transforms.landmark_crop_box`;
resized to image_size x image_size bilinearly, aspect not kept. The ground-truth points come back
in crop pixels with the pixel-centre map of `transforms.points_to_crop`. Records without points
(plain folders) use `transforms.fixed_crop_box` and return NaN points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.records import FaceRecord, read_image_rgb
from datasets.transforms import image_to_chw_float, rotate_and_crop
from utils.landmarks import NUM_ANNOTATED


def eval_crop(image: np.ndarray, points_xy: np.ndarray | None, tight: int, size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image -> ((3, size, size) float32 in [0, 1], (5, 2) crop points or NaN)."""
    crop, crop_points, _ = rotate_and_crop(image, points_xy, 0.0, tight, size)
    if crop_points is None:
        crop_points = np.full((NUM_ANNOTATED, 2), np.nan, dtype=np.float32)
    return image_to_chw_float(crop), crop_points


class EvalCropDataset(Dataset):
    """Deterministic evaluation crops of `records`.

    Item: {"image": (3, S, S) float32 RGB in [0, 1], "points": (5, 2) float32 (x, y) crop pixels
    (NaN if unannotated), "index": int, "name": str}. An image that does not decode raises
    `UserError` naming the file (use `skip_bad_images` in `build_eval_dataset` to drop such
    images up front).
    """

    def __init__(self, records: Sequence[FaceRecord], *, image_size: int, tight: int) -> None:
        self.records = list(records)
        self.image_size = image_size
        self.tight = tight

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image, points = eval_crop(read_image_rgb(record.path), record.points_xy, self.tight,
                                  self.image_size)
        return {"image": torch.from_numpy(image), "points": torch.from_numpy(points),
                "index": index, "name": record.name}
