"""Pictures of the faces found in a photo: what detect.py writes beside landmarks.csv.

Each face gets its box, its index (the `face` column of landmarks.csv), its K raw points as small discs
(landmark k always in the same colour) and its five named points as crosses, each name in its own colour
(`NAMED_RGB`). Marker sizes follow each face's box, so the points of a small face in a group photo do not
cover it and those of a large face stay visible. A header at the top left names the face finder and the
number of faces (or says that none was found), and a legend at the bottom left names the colours of the five
named points.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inference.photo import Photo
from inference.points import FaceLandmarks
from utils.landmarks import LANDMARK_NAMES
from utils.visualize import distinct_colors, draw_points

RGB = tuple[int, int, int]
BOX_RGB, TEXT_RGB, PANEL_RGB = (0, 255, 0), (255, 255, 255), (0, 0, 0)
NAMED_RGB: dict[str, RGB] = {"left_eye": (0, 160, 255), "right_eye": (255, 60, 60), "nose": (255, 230, 0),
                             "left_mouth": (0, 230, 90), "right_mouth": (255, 0, 255)}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def marker_sizes(box_side: float) -> tuple[int, int, int]:
    """(raw disc radius, named cross half-size, line thickness) in pixels for a face box of side `box_side`
    pixels: about 1/60, 1/20 and 1/100 of the side, at least 1, 2 and 1 (a 120-px face: 2, 6, 1)."""
    return max(1, round(box_side / 60)), max(2, round(box_side / 20)), max(1, round(box_side / 100))


def text_scale(height_px: float) -> tuple[float, int]:
    """(cv2 font scale, thickness) for text about `height_px` pixels tall (HERSHEY_SIMPLEX: ~22 px at 1.0)."""
    scale = max(0.35, height_px / 22)
    return scale, max(1, round(scale * 1.5))


def label_height(text: str, height_px: float) -> int:
    """The height in pixels of the panel `put_label` draws for `text`."""
    scale, thickness = text_scale(height_px)
    (_, height), base = cv2.getTextSize(text, FONT, scale, thickness)
    return height + base + 2 * max(1, height // 4)


def put_label(image: np.ndarray, text: str, origin_xy: tuple[int, int], height_px: float,
              color: RGB = TEXT_RGB) -> int:
    """Write `text` with its top-left corner at `origin_xy` on a black panel; returns the panel's height."""
    scale, thickness = text_scale(height_px)
    (width, height), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin_xy
    pad = max(1, height // 4)
    cv2.rectangle(image, (x, y), (x + width + 2 * pad, y + height + base + 2 * pad), PANEL_RGB, -1)
    cv2.putText(image, text, (x + pad, y + pad + height), FONT, scale, color, thickness, cv2.LINE_AA)
    return height + base + 2 * pad


def draw_face(image: np.ndarray, photo: Photo, index: int, face: FaceLandmarks, colors: Sequence[RGB]) -> np.ndarray:
    """One face on `image` (the photo's pixels): box, index, K small discs, five coloured crosses."""
    x0, y0, x1, y1 = (round(v) for v in photo.pixel_edges(face.face_box))
    radius, cross, thickness = marker_sizes(min(x1 - x0, y1 - y0))
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), BOX_RGB, thickness)
    put_label(image, str(index), (x0, y0), max(10, (y1 - y0) / 8), BOX_RGB)
    image = draw_points(image, photo.to_pixels_xy(face.points_xy), colors, radius=radius)
    if face.named_xy is not None:
        for name, (x, y) in zip(LANDMARK_NAMES, photo.to_pixels_xy(face.named_xy)):
            if np.isfinite([x, y]).all() and abs(x) < 1e6 and abs(y) < 1e6:
                centre = (round(x), round(y))
                cv2.drawMarker(image, centre, PANEL_RGB, cv2.MARKER_CROSS, 2 * cross + 2, thickness + 2)
                cv2.drawMarker(image, centre, NAMED_RGB[name], cv2.MARKER_CROSS, 2 * cross, thickness)
    return image


def draw_faces(photo: Photo, faces: Sequence[FaceLandmarks], source: str) -> np.ndarray:
    """The photo's pixels with every face drawn (`draw_face`, index = position in `faces`), a header with the
    face count and their `source` ("found by yunet": "2 faces found by yunet", "no face found by yunet") and,
    when a face has named points, their legend. Returns a new (h, w, 3) uint8 RGB image."""
    image = np.ascontiguousarray(photo.pixels.copy())
    colors = distinct_colors(len(faces[0].points_xy)) if faces else []
    for index, face in enumerate(faces):
        image = draw_face(image, photo, index, face, colors)
    line = max(8.0, min(image.shape[:2]) / 40)
    count = f"{len(faces)} faces" if len(faces) > 1 else "1 face" if faces else "no face"
    put_label(image, f"{count} {source}", (0, 0), line)
    if any(face.named_xy is not None for face in faces):  # the legend, at the bottom left
        y = image.shape[0] - sum(label_height(f"+ {name}", line) for name in LANDMARK_NAMES)
        for name in LANDMARK_NAMES:
            y += put_label(image, f"+ {name}", (0, y), line, NAMED_RGB[name])
    return image
