"""The detector on the faces of a photo: its K points in each face's crops, and the five named points.

Points inside the pipeline are (x, y) in crop pixels with the pixel-centre convention of utils/geometry.py;
the named-point regressors work at the 128-px evaluation scale (`EVAL_CROP_SIZE`), as the evaluation
protocol's; `locate_faces` maps every point back to the photo's full pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from datasets.transforms import crop_to_image_xy, points_to_crop
from inference.crops import FaceInput
from utils.errors import UserError
from utils.geometry import EVAL_CROP_SIZE, heatmap_to_image_xy
from utils.landmarks import LANDMARK_NAMES, NUM_ANNOTATED
from utils.metrics import RidgeModel, apply_point_regressor
from utils.visualize import rescale_points_px


class FaceLandmarks(NamedTuple):
    """One face's points in the photo's full-image pixels (in its frame): points_xy (K, 2) raw detections,
    named_xy (5, 2) in `LANDMARK_NAMES` order (None without a regressor); face_box as `FaceInput.face_box`."""

    face_box: tuple[int, int, int, int]
    points_xy: np.ndarray
    named_xy: np.ndarray | None


@torch.no_grad()
def detect_crops(model: nn.Module, crops: Sequence[np.ndarray], device: torch.device | str = "cpu",
                 batch_size: int = 64) -> np.ndarray:
    """(N of (S, S, 3) uint8 RGB crops) -> (N, K, 2) float64 points (x, y) in crop pixels (S scale).

    model: anything with `detect(images) -> (points in heatmap pixels, heatmaps)`, in eval mode (a face's
    points then do not depend on the other crops of its batch). N = 0 gives an empty (0, 0, 2) array.
    """
    out = []
    for start in range(0, len(crops), batch_size):
        batch = torch.from_numpy(np.stack(crops[start:start + batch_size])).to(device)  # (B, S, S, 3) uint8
        images = batch.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S) in [0, 1], as image_to_chw_float
        points_hm, _ = model.detect(images)  # (B, K, 2) heatmap pixels
        out.append(heatmap_to_image_xy(points_hm.float()).cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0, 2))


def to_eval_scale(points_xy: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels of an (size, size) crop -> pixels of the same crop at the 128-px evaluation scale."""
    return rescale_points_px(points_xy, (size, size), (EVAL_CROP_SIZE, EVAL_CROP_SIZE))


def look_points(model: nn.Module, faces: Sequence[FaceInput], points: np.ndarray, size: int,
                device: torch.device | str = "cpu", batch_size: int = 64) -> np.ndarray:
    """The regressor input of faces with several looks: (N, M * K, 2), the K points of each of the M looks
    (the main crop's `points` (N, K, 2) first, then `face.looks` in order) in the main crop's pixels at the
    128-px scale, each look's points mapped through the full-image pixels (exact also where a look is clamped)."""
    per_look = [to_eval_scale(points, size)]
    for look in range(len(faces[0].looks) if faces else 0):
        found = detect_crops(model, [face.looks[look][1] for face in faces], device, batch_size)  # (N, K, 2)
        per_look.append(np.stack([points_to_crop(crop_to_image_xy(found[i], face.looks[look][0], size),
                                                 face.seen_box, EVAL_CROP_SIZE) for i, face in enumerate(faces)]))
    return np.concatenate(per_look, axis=1)


def locate_faces(model: nn.Module, faces: Sequence[FaceInput], size: int, device: torch.device | str = "cpu",
                 regressor: RidgeModel | None = None, batch_size: int = 64,
                 looks_regressor: RidgeModel | None = None) -> list[FaceLandmarks]:
    """Detect the K points of each face and, with a regressor, its five named points, in full-image pixels.

    The raw points map back from the (size, size) crop through `face.seen_box`; the regressor maps the
    points at the 128-px scale to the named points in the same 128-px crop, which map back the same way.
    Faces with further looks (`FaceInput.looks`, all faces alike) take the named points from
    `looks_regressor` on the points of all their looks (`look_points`) instead.
    """
    points = detect_crops(model, [face.crop for face in faces], device, batch_size)  # (N, K, 2) crop pixels
    named = None
    if faces and looks_regressor is not None and faces[0].looks:
        named = apply_point_regressor(looks_regressor, look_points(model, faces, points, size, device, batch_size))
    elif faces and regressor is not None:
        named = apply_point_regressor(regressor, to_eval_scale(points, size))
    return [FaceLandmarks(face.face_box, crop_to_image_xy(points[i], face.seen_box, size),
                          None if named is None else crop_to_image_xy(named[i], face.seen_box, EVAL_CROP_SIZE))
            for i, face in enumerate(faces)]


def read_named_points(ckpt: dict, num_points: int, where: str) -> RidgeModel | None:
    """The regressor of a checkpoint's `named_points` entry (None if it has none), checked to map K points
    to the five named ones; a one-line UserError naming `where` otherwise."""
    entry = ckpt.get("named_points")
    if entry is None:
        return None
    if not isinstance(entry, dict) or "regressor" not in entry:
        raise UserError(f"{where}: its named_points entry holds no regressor; expected the dict that "
                        "export_model.py or eval_regressor.py --attach-to writes")
    regressor = RidgeModel.from_dict(entry["regressor"], f"{where} (named_points)")
    names = tuple(entry.get("names", LANDMARK_NAMES))
    if regressor.weights.shape != (2 * NUM_ANNOTATED, 2 * num_points) or names != LANDMARK_NAMES:
        raise UserError(f"{where}: its named_points regressor maps {regressor.weights.shape[1] // 2} points to "
                        f"{regressor.weights.shape[0] // 2} ({', '.join(names)}); expected K={num_points} points "
                        f"to the five {', '.join(LANDMARK_NAMES)}")
    return regressor
