"""Image and point geometry for training views and evaluation crops (docs/reference.md, "Data").

Conventions used by every function here:

* Images are (H, W, C) uint8 numpy arrays; sizes are written (width, height) as `*_wh`.
* Points are (N, 2) float arrays of (x, y) in pixels with **pixel centres at integers**: column 0
  covers x in [-0.5, 0.5). This is OpenCV's convention for `warpAffine` and `resize`, so a point
  mapped by the functions below stays on the same image content.
* A crop box is (x0, y0, x1, y1) in integer pixels, upper bounds exclusive (`image[y0:y1, x0:x1]`).
* Angles are in degrees; a positive view angle θ calls `cv2.getRotationMatrix2D(centre, -θ, 1)`,
  as the reference does, so it turns the face clockwise on screen.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from utils.landmarks import FLIP_PERMUTATION

# Landmark-driven crop (the reference's): margin m = int(tight * delta / 100), or
# SMALL_FACE_MARGIN when the landmark extent delta is below SMALL_FACE_EXTENT pixels.
SMALL_FACE_EXTENT = 20.0
SMALL_FACE_MARGIN = 8
# Median CelebA aligned landmarks in 178x218 images (rows 1-330 of the landmark file), (x, y).
CELEBA_ALIGNED_WH = (178, 218)
CELEBA_MEDIAN_POINTS_XY = np.array(
    [[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]], dtype=np.float32)


def rotation_matrix_enlarged(width: int, height: int, angle_deg: float
                             ) -> tuple[np.ndarray, tuple[int, int]]:
    """Rotate about the image centre onto a canvas just big enough for the whole rotated image.

    The matrix is `cv2.getRotationMatrix2D(centre, -angle_deg, 1)` about the exact centre
    ((width - 1) / 2, (height - 1) / 2), shifted so that this centre lands on the canvas centre.

    Returns (matrix (2, 3) float64 mapping source (x, y) to canvas (x, y), canvas (width, height)).
    angle_deg = 0 gives the identity and the same size.
    """
    radians = math.radians(angle_deg)
    cos, sin = abs(math.cos(radians)), abs(math.sin(radians))
    # Subtract a hair before ceil so that 0 and 90 degrees give exact sizes despite rounding.
    canvas_w = int(math.ceil(width * cos + height * sin - 1e-6))
    canvas_h = int(math.ceil(width * sin + height * cos - 1e-6))
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, -float(angle_deg), 1.0)
    matrix[0, 2] += (canvas_w - 1) / 2.0 - centre[0]
    matrix[1, 2] += (canvas_h - 1) / 2.0 - centre[1]
    return matrix, (canvas_w, canvas_h)


def warp_image(image: np.ndarray, matrix: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """`cv2.warpAffine` with bilinear sampling and replicated borders; output (h, w, C)."""
    return cv2.warpAffine(image, matrix, size_wh, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def transform_points(points_xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) (x, y) points; returns (N, 2) float32."""
    points = np.asarray(points_xy, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def crop_margin(points_xy: np.ndarray, tight: int) -> int:
    """Margin in pixels around the landmarks: 8 if delta < 20 else int(tight * delta / 100).

    delta = ((max x - min x) + (max y - min y)) / 2 of the (N, 2) points.
    """
    extent = points_xy.max(axis=0) - points_xy.min(axis=0)
    delta = 0.5 * float(extent[0] + extent[1])
    return SMALL_FACE_MARGIN if delta < SMALL_FACE_EXTENT else int(tight * delta / 100.0)


def clamp_box(box: tuple[int, int, int, int], image_wh: tuple[int, int]
              ) -> tuple[int, int, int, int]:
    """Clamp a box to the image, keeping at least one pixel in each direction."""
    x0, y0, x1, y1 = box
    width, height = image_wh
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    return x0, y0, max(min(x1, width), x0 + 1), max(min(y1, height), y0 + 1)


def landmark_crop_box(points_xy: np.ndarray, tight: int, image_wh: tuple[int, int]
                      ) -> tuple[int, int, int, int]:
    """The reference's landmark-driven box: [round(min) - m, round(max) + m), clamped.

    points_xy: (N, 2) (x, y) pixels; rounding is numpy's (half to even).
    Worked example: points spanning x 69..108 and y 111..152 give delta = 40, m = int(0.7 * 40)
    = 28 with tight 70, so the box is (41, 83, 136, 180): 95 x 97 pixels.
    """
    margin = crop_margin(points_xy, tight)
    low = np.rint(points_xy.min(axis=0)).astype(int) - margin
    high = np.rint(points_xy.max(axis=0)).astype(int) + margin
    return clamp_box((int(low[0]), int(low[1]), int(high[0]), int(high[1])), image_wh)


def fixed_crop_box(image_wh: tuple[int, int], tight: int) -> tuple[int, int, int, int]:
    """Box for images without annotations.

    CelebA-aligned 178x218 images: the landmark-driven box of the median CelebA landmarks
    (`CELEBA_MEDIAN_POINTS_XY`), so it matches the typical annotated crop (95x97 at tight 70).
    Any other size: the centred square of side min(width, height); `tight` is not used.
    """
    width, height = image_wh
    if (width, height) == CELEBA_ALIGNED_WH:
        return landmark_crop_box(CELEBA_MEDIAN_POINTS_XY, tight, image_wh)
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def box_centre_xy(box: tuple[int, int, int, int]) -> np.ndarray:
    """Centre of a box in pixel-centre coordinates, (1, 2) float32."""
    x0, y0, x1, y1 = box
    return np.array([[(x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0]], dtype=np.float32)


def box_around(centre_xy: np.ndarray, size_wh: tuple[int, int], image_wh: tuple[int, int]
               ) -> tuple[int, int, int, int]:
    """A box of `size_wh` centred as near as possible to the (1, 2) `centre_xy`, then clamped."""
    width, height = size_wh
    x0 = int(round(float(centre_xy[0, 0]) - (width - 1) / 2.0))
    y0 = int(round(float(centre_xy[0, 1]) - (height - 1) / 2.0))
    return clamp_box((x0, y0, x0 + width, y0 + height), image_wh)


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut `box` out of `image` and resize it to (size, size) bilinearly, aspect not kept."""
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR)


def points_to_crop(points_xy: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Map (N, 2) image points into the (size, size) crop of `box` made by `crop_resize`.

    cv2.resize aligns pixel centres, so the exact map is x' = (x - x0 + 0.5) * size / w - 0.5
    (w = x1 - x0), and the same for y. (The reference drops the two 0.5 terms, a shift of under
    0.2 crop pixels at size 128 for a 95-pixel box.)
    """
    x0, y0, x1, y1 = box
    scale = np.array([size / (x1 - x0), size / (y1 - y0)], dtype=np.float64)
    origin = np.array([x0, y0], dtype=np.float64)
    return ((points_xy - origin + 0.5) * scale - 0.5).astype(np.float32)


def crop_to_image_xy(points_xy: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Pixels of the (size, size) crop of `box` -> pixels of the image: the exact inverse of `points_to_crop`.

    x = x0 + (x' + 0.5) * w / size - 0.5 with w = x1 - x0, and the same for y with y0 and h = y1 - y0. The box
    edges may be fractional (a box of a reduced decode, scaled back to the stored image's pixels).
    Example: box (50, 0, 150, 100), size 64: the crop centre (31.5, 31.5) -> (99.5, 49.5), the box centre;
    the top-left crop pixel (0, 0) -> (50.28125, 0.28125). Any shape (..., 2) -> the same shape, float64.
    """
    x0, y0, x1, y1 = box
    scale = np.array([(x1 - x0) / size, (y1 - y0) / size], dtype=np.float64)  # (2,) image pixels per crop pixel
    return np.array([x0, y0], dtype=np.float64) + (np.asarray(points_xy, dtype=np.float64) + 0.5) * scale - 0.5


def hflip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an (H, W, C) image left-right."""
    return np.ascontiguousarray(image[:, ::-1])


def hflip_points(points_xy: np.ndarray, width: int) -> np.ndarray:
    """Mirror (5, 2) points of an image `width` wide and swap left/right labels.

    x' = width - 1 - x (pixel centres), then rows reordered by `FLIP_PERMUTATION` so that the
    left-eye row is again the eye with the smaller x, and the same for the mouth corners.
    """
    flipped = np.array(points_xy, dtype=np.float32)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[list(FLIP_PERMUTATION)]


def warp_crop(image: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int]
              ) -> np.ndarray:
    """The `box` region of `warp_image(image, matrix, canvas)`, computing only that region.

    Shifting the matrix by -(x0, y0) gives the same sampling positions (up to OpenCV's rounding of
    them to 1/32 pixel: a few per cent of the pixels differ, by a few grey levels), and replicated
    borders refer to `image` either way, so this equals warping the whole canvas and slicing, at a
    fraction of the cost.
    """
    x0, y0, x1, y1 = box
    shifted = matrix.copy()
    shifted[:, 2] -= (x0, y0)
    return warp_image(image, shifted, (x1 - x0, y1 - y0))


class View(NamedTuple):
    """One training view: the crop, its annotated points and the map from source to crop pixels."""

    image: np.ndarray  # (size, size, C) uint8
    points_xy: np.ndarray | None  # (5, 2) crop pixels, None for unannotated images
    source_to_crop: np.ndarray  # (2, 3) float64 affine map: source-image (x, y) -> crop (x, y)


def crop_matrix(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The (2, 3) affine form of `points_to_crop`: box pixels -> (size, size) crop pixels."""
    x0, y0, x1, y1 = box
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of `outer` after `inner`: p -> outer(inner(p))."""
    linear = outer[:, :2] @ inner[:, :2]  # (2, 2)
    offset = outer[:, :2] @ inner[:, 2] + outer[:, 2]  # (2,)
    return np.hstack([linear, offset[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """(2, 3) inverse of an invertible (2, 3) affine map."""
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, -linear_inv @ matrix[:, 2:]])


def jitter_box(box: tuple[int, int, int, int], scale: float, shift_xy: tuple[float, float],
               image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """`box` scaled by `scale` about its centre and moved by shift_xy times its (width, height), clamped.

    Example: (10, 20, 50, 60) scaled by 1.5 and shifted by (0.25, 0) in a 200x200 image: centre
    (29.5, 39.5) -> (39.5, 39.5), side 40 -> 60: (10, 10, 70, 70).
    """
    width, height = box[2] - box[0], box[3] - box[1]
    centre = box_centre_xy(box) + np.array([[shift_xy[0] * width, shift_xy[1] * height]], dtype=np.float32)
    return box_around(centre, (max(1, round(width * scale)), max(1, round(height * scale))), image_wh)


def rotate_and_crop(image: np.ndarray, points_xy: np.ndarray | None, angle_deg: float,
                    tight: int, size: int, box_scale: float = 1.0,
                    box_shift_xy: tuple[float, float] = (0.0, 0.0)) -> View:
    """One view: rotate about the centre (enlarged canvas), crop around the points, resize.

    image: (H, W, C) uint8. points_xy: (5, 2) (x, y) pixels, or None for unannotated images,
    which use `fixed_crop_box` of the unrotated image, moved to where its centre rotates to.
    box_scale, box_shift_xy: `jitter_box` applied to that crop box (1 and (0, 0): the box itself).
    Returns the (size, size, C) view, the points in its pixels (None if none were given) and the
    affine map from source pixels to view pixels (which sends `points_xy` to the view's points).
    Only the crop box of the rotated canvas is warped (`warp_crop`); angle_deg = 0 slices the
    image directly.
    """
    height, width = image.shape[:2]
    matrix, canvas_wh = rotation_matrix_enlarged(width, height, angle_deg)
    if points_xy is None:
        x0, y0, x1, y1 = fixed_crop_box((width, height), tight)
        centre = transform_points(box_centre_xy((x0, y0, x1, y1)), matrix)
        box = box_around(centre, (x1 - x0, y1 - y0), canvas_wh)
        crop_points = None
    else:
        points_xy = transform_points(points_xy, matrix)
        box = landmark_crop_box(points_xy, tight, canvas_wh)
    if box_scale != 1.0 or box_shift_xy != (0.0, 0.0):
        box = jitter_box(box, box_scale, box_shift_xy, canvas_wh)
    if points_xy is not None:
        crop_points = points_to_crop(points_xy, box, size)
    source_to_crop = compose_affine(crop_matrix(box, size), matrix)
    if angle_deg == 0:
        return View(crop_resize(image, box, size), crop_points, source_to_crop)
    return View(crop_resize(warp_crop(image, matrix, box), (0, 0, box[2] - box[0], box[3] - box[1]), size),
                crop_points, source_to_crop)


def image_to_chw_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0
