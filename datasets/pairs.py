"""Two-view training samples (the reference's augmentation): x' and x, two random rotations and crops of one image.

For each view: θ = clip(N(0, 1) * std, -40, 40) degrees with std = `angle` for x' and 2 * `angle`
for x; rotation about the image centre on an enlarged canvas with replicated borders; margin
tight = int(`tight` + `tight_jitter` * N(0, 1)); the landmark-driven crop; resize to S x S. No
TPS warps and no colour jitter, as in the reference. `angle = 0` gives unrotated views (the
reference crashes there). Beyond the reference, and off by default: each view's crop box may be
scaled by exp(`scale_jitter` * N(0, 1)) (clipped to +-2 standard deviations) about its centre and
moved by `shift_jitter` * N(0, 1) of its width and of its height, so that the views also differ
in scale and position, as crops around a face detector's box do (`transforms.jitter_box`).

Horizontal flip (`flip=True`): with probability 1/2 the source image is mirrored before both views
(so both or neither are flipped). Unlike the reference, the points are mirrored too and their
left/right labels swapped (`transforms.hflip_points`), so each point stays on its feature.

Randomness: item `index` in epoch `epoch` draws from `np.random.default_rng([seed, epoch, index])`,
in this order: the flip (only if `flip`), θ', tight' (then scale' if `scale_jitter`, shift' if
`shift_jitter`) for x', then the same for x. An item is
therefore the same whatever the worker count, the worker it lands on, or the order of reads, and
a resumed run that calls `set_epoch(epoch)` sees the same data as an uninterrupted one.

Unannotated records (plain folders) crop the `transforms.fixed_crop_box` around the rotated image
centre and return NaN points.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.records import FaceRecord, SkippedDataWarning, read_image_rgb
from datasets.transforms import (compose_affine, hflip_image, hflip_points, image_to_chw_float, invert_affine,
                                 rotate_and_crop)
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED

MAX_ANGLE_DEG = 40.0


@dataclass(frozen=True)
class ViewParams:
    """How one view is cut: rotation in degrees, margin in percent, crop-box scale and shift."""

    angle: float
    tight: int
    box_scale: float = 1.0
    box_shift_xy: tuple[float, float] = (0.0, 0.0)


def sample_view_params(rng: np.random.Generator, angle_std: float, tight: float, tight_jitter: float,
                       scale_jitter: float = 0.0, shift_jitter: float = 0.0) -> ViewParams:
    """Draw one view's parameters: θ in degrees clipped to ±40, an integer margin percentage, and only
    when their jitter is on, a box scale exp(N(0, 1) * scale_jitter) (N clipped to ±2) and a box shift."""
    angle = float(np.clip(rng.standard_normal() * angle_std, -MAX_ANGLE_DEG, MAX_ANGLE_DEG))
    view = ViewParams(angle, int(tight + tight_jitter * rng.standard_normal()))
    if scale_jitter > 0:
        view = replace(view, box_scale=float(np.exp(scale_jitter * np.clip(rng.standard_normal(), -2, 2))))
    if shift_jitter > 0:
        view = replace(view, box_shift_xy=tuple(float(v) for v in shift_jitter * rng.standard_normal(2)))
    return view


def make_pair(image: np.ndarray, points_xy: np.ndarray | None, rng: np.random.Generator, *,
              angle: float, tight: float, tight_jitter: float, flip: bool, size: int,
              scale_jitter: float = 0.0, shift_jitter: float = 0.0) -> dict:
    """Both views of one (H, W, 3) uint8 image with (5, 2) (x, y) pixel points or None.

    Returns numpy arrays {"x", "x_prime": (size, size, 3) uint8; "points_x", "points_x_prime":
    (5, 2) float32 crop pixels, NaN if unannotated; "x_to_x_prime": (2, 3) float32 affine map from
    x's crop pixels to x''s, built from the views' rotations and crop boxes alone (it sends
    "points_x" onto "points_x_prime"; the flip precedes both views, so it is not part of it);
    "flipped": bool}.
    """
    flipped = bool(flip and rng.random() < 0.5)
    if flipped:
        if points_xy is not None:
            points_xy = hflip_points(points_xy, image.shape[1])
        image = hflip_image(image)
    views, source_to_crop = {}, {}
    for key, angle_std in (("x_prime", angle), ("x", 2.0 * angle)):
        p = sample_view_params(rng, angle_std, tight, tight_jitter, scale_jitter, shift_jitter)
        view, view_points, source_to_crop[key] = rotate_and_crop(image, points_xy, p.angle, p.tight, size,
                                                                 p.box_scale, p.box_shift_xy)
        if view_points is None:
            view_points = np.full((NUM_ANNOTATED, 2), np.nan, dtype=np.float32)
        views[key], views["points_" + key] = view, view_points
    views["x_to_x_prime"] = compose_affine(source_to_crop["x_prime"],
                                           invert_affine(source_to_crop["x"])).astype(np.float32)
    views["flipped"] = flipped
    return views


class TwoViewDataset(Dataset):
    """Pairs (x, x') of random views of `records`; see the module docstring for the recipe.

    Item: {"x", "x_prime": (3, S, S) float32 RGB in [0, 1]; "points_x", "points_x_prime": (5, 2)
    float32 (x, y) crop pixels, NaN if unannotated; "x_to_x_prime": (2, 3) float32 affine map from
    x's crop pixels to x''s (see `make_pair`); "index": int; "name": str}.

    Call `set_epoch(epoch)` before each epoch (in the main process, before iterating; DataLoader
    workers pick it up when they are started for the epoch, i.e. with persistent_workers=False).

    Images are decoded lazily. One that does not decode raises `UserError` naming it; with
    `skip_bad_images` the next decodable record is used instead (its "index" and "name" are
    returned), each bad file is warned about once per process, and `num_skipped` counts them.
    """

    def __init__(self, records: Sequence[FaceRecord], *, image_size: int, angle: float,
                 tight: float, tight_jitter: float, flip: bool, skip_bad_images: bool,
                 seed: int, scale_jitter: float = 0.0, shift_jitter: float = 0.0) -> None:
        self.records = list(records)
        self.image_size = image_size
        self.angle = angle
        self.tight = tight
        self.tight_jitter = tight_jitter
        self.scale_jitter = scale_jitter
        self.shift_jitter = shift_jitter
        self.flip = flip
        self.skip_bad_images = skip_bad_images
        self.seed = seed
        self.epoch = 0
        self.bad_indices: set[int] = set()

    @property
    def num_skipped(self) -> int:
        """Undecodable images met so far in this process."""
        return len(self.bad_indices)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of `epoch` (items are a function of seed, epoch, index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def read_first_good(self, index: int) -> tuple[int, np.ndarray]:
        """(index, RGB image) of the first decodable record at or after `index`, cyclically."""
        for offset in range(len(self.records)):
            candidate = (index + offset) % len(self.records)
            if candidate in self.bad_indices:
                continue
            try:
                return candidate, read_image_rgb(self.records[candidate].path)
            except UserError as error:
                if not self.skip_bad_images:
                    raise
                self.bad_indices.add(candidate)
                warnings.warn(f"skipping undecodable image ({len(self.bad_indices)} so far in "
                              f"this process): {error}", SkippedDataWarning, stacklevel=2)
        raise UserError(f"{self.records[0].path.parent}: none of the {len(self.records)} images "
                        f"decode; expected readable jpg/png/bmp files")

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        used, image = self.read_first_good(index)
        record = self.records[used]
        pair = make_pair(image, record.points_xy, rng, angle=self.angle, tight=self.tight,
                         tight_jitter=self.tight_jitter, flip=self.flip, size=self.image_size,
                         scale_jitter=self.scale_jitter, shift_jitter=self.shift_jitter)
        return {"x": torch.from_numpy(image_to_chw_float(pair["x"])),
                "x_prime": torch.from_numpy(image_to_chw_float(pair["x_prime"])),
                "points_x": torch.from_numpy(pair["points_x"]),
                "points_x_prime": torch.from_numpy(pair["points_x_prime"]),
                "x_to_x_prime": torch.from_numpy(pair["x_to_x_prime"]),
                "index": used, "name": record.name}
