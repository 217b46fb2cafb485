"""AFLW, read from the VGG `aflw_release-2` layout (docs/reference.md, "Data").

Layout under `root`::

    output/<name>                      pre-cropped face images
    aflw_train_images.txt              names relative to output/, one per line (about 10,122)
    aflw_test_images.txt               (about 2,991)
    aflw_train_keypoints.mat           `gt`: N x 5 x 2 points in (y, x) order; `hw`: N x 2
    aflw_test_keypoints.mat

`gt` is flipped to (x, y) and used as pixel coordinates without a 1-based correction, as the
reference does (an affine regressor with bias absorbs any constant offset). `hw` is not used: the
image itself gives its size.

Checks (see `datasets.records`): a name listed twice in one list or in both lists (when both are
present) is refused with its line numbers, a face of `gt` holding nan/inf with its face number and
image name; then the split's faces pass `records.check_faces`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from datasets.records import (FaceRecord, check_faces, drop_missing_images, read_name_lines,
                              refuse_nonfinite_rows, refuse_overlap, require_dir, require_file,
                              require_nonempty)
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED


def read_aflw_keypoints_yx(path: Path) -> np.ndarray:
    """The `gt` array of an AFLW keypoint .mat as (N, 5, 2) float32, still in (y, x) order."""
    require_file(path, "the AFLW keypoint file (aflw_{train,test}_keypoints.mat)")
    try:
        content = scipy.io.loadmat(str(path), variable_names=["gt"])
    except (scipy.io.matlab.MatReadError, ValueError, NotImplementedError, OSError) as error:
        raise UserError(f"{path}: not a readable MATLAB .mat file ({error}); "
                        f"expected a v5 .mat with a 'gt' array") from None
    if "gt" not in content:
        raise UserError(f"{path}: no 'gt' variable; expected 'gt' with N x 5 x 2 (y, x) keypoints")
    try:
        gt = np.asarray(content["gt"], dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{path}: 'gt' is not a numeric array (a cell array or struct?); "
                        f"expected N x 5 x 2 (y, x) keypoints") from None
    if gt.ndim != 3 or gt.shape[1:] != (NUM_ANNOTATED, 2):
        raise UserError(f"{path}: 'gt' has shape {gt.shape}; expected N x 5 x 2 (y, x) keypoints")
    return gt


def yx_to_xy(points_yx: np.ndarray) -> np.ndarray:
    """Swap the last axis from (y, x) to (x, y); any leading shape."""
    return points_yx[..., ::-1].copy()


def load_aflw_records(root: Path, split: str, *, skip_bad_images: bool = False) -> list[FaceRecord]:
    """Records of `aflw-train` or `aflw-test`, points (x, y) in pixels of the `output/` image.

    Record sources are "<keypoint .mat> face <i>" (1-based, the i-th listed image).
    """
    require_dir(root, "the aflw_release-2 root holding output/ and aflw_*_images.txt")
    part = {"aflw-train": "train", "aflw-test": "test"}[split]
    list_path = root / f"aflw_{part}_images.txt"
    entries = read_name_lines(list_path)
    other_part = {"train": "test", "test": "train"}[part]
    other_path = root / f"aflw_{other_part}_images.txt"
    if other_path.exists():
        lists = {part: (list_path, entries), other_part: (other_path, read_name_lines(other_path))}
        refuse_overlap(*lists["test"], *lists["train"])
    names = [name for _, name in entries]
    mat_path = root / f"aflw_{part}_keypoints.mat"
    points_xy = yx_to_xy(read_aflw_keypoints_yx(mat_path))
    if len(points_xy) != len(names):
        raise UserError(f"{mat_path}: 'gt' has {len(points_xy)} faces but {list_path} lists "
                        f"{len(names)} images; expected one keypoint set per listed image")
    if not skip_bad_images:  # else check_faces skips those faces
        nonfinite = []
        for i in np.flatnonzero(~np.isfinite(points_xy).all(axis=(1, 2))):
            k = int(np.argmax(~np.isfinite(points_xy[i]).all(axis=1)))
            nonfinite.append((f"{mat_path} face {i + 1}",
                              f"{names[i]} ({list_path.name} line {entries[i][0]}) has (y, x) = "
                              f"({points_xy[i, k, 1]:g}, {points_xy[i, k, 0]:g}) at point {k + 1}"))
        refuse_nonfinite_rows(mat_path, nonfinite, len(names), "faces")
    image_dir = require_dir(root / "output", "the AFLW face images (output/)")
    records = [FaceRecord(name, image_dir / name, pts, f"{mat_path} face {i + 1}")
               for i, (name, pts) in enumerate(zip(names, points_xy))]
    records = drop_missing_images(records, list_path, skip_bad_images)
    records = check_faces(records, skip_bad_images)
    require_nonempty(records, split, list_path)
    return records
