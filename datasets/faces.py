"""Faces in a photo, and the crop a landmark model was trained on around each of them.

Finding faces: OpenCV's Haar cascade for frontal faces (`haarcascade_frontalface_alt2.xml`), which the
OpenCV 4 wheels ship inside the package, so nothing is downloaded at run time. It runs on a grey copy
of the photo scaled down to at most `DETECT_MAX_SIDE` pixels, so a 4,400-pixel photo costs about what a
640-pixel one does; the boxes are scaled back to the photo's pixels.

From a face box to a training crop: the models are trained on landmark-driven crops (the annotated
points' box widened by the margin `data.tight`, `datasets.transforms.landmark_crop_box`), which a
face detector's box does not give. `BoxToCrop` is the map from a detector box to that crop: the crop's
centre is the box centre shifted by a fraction of the box size, and its sides are multiples of the box
sides. `fit_box_to_crop` learns it from faces whose both boxes are known (MTFL training photos);
checkpoints that ship with a model carry it.

Boxes are (x0, y0, x1, y1) in integer pixels, x1 and y1 exclusive, as in datasets/transforms.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from datasets.transforms import clamp_box, crop_resize
from utils.errors import UserError

Box = tuple[int, int, int, int]
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
DETECT_MAX_SIDE = 640  # faces are searched on a copy whose longer side is at most this
MIN_FACE_FRACTION = 0.08  # the smallest face searched for, as a fraction of the copy's shorter side
SCALE_STEP = 1.1  # cascade scale factor between search sizes
MIN_NEIGHBORS = 3  # detections a face needs around it (higher: fewer false faces, more missed ones)


def load_face_cascade() -> cv2.CascadeClassifier:
    """The frontal-face Haar cascade of the installed OpenCV; a one-line error if the build has none."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    cascade = cv2.CascadeClassifier(folder + CASCADE_FILE) if folder else None
    if cascade is None or cascade.empty():
        raise UserError(f"this OpenCV ({cv2.__version__}) ships no {CASCADE_FILE} to find faces with; install the "
                        "pinned one (pip install -r requirements.txt: opencv-python-headless 4.x), or give face boxes "
                        "(--crop box / --boxes FILE)")
    return cascade


def find_faces(image_rgb: np.ndarray, cascade: cv2.CascadeClassifier) -> list[Box]:
    """Face boxes of an (H, W, 3) uint8 RGB photo in its own pixels, largest first (none: an empty list)."""
    height, width = image_rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    min_side = max(20, round(MIN_FACE_FRACTION * min(grey.shape)))
    found = cascade.detectMultiScale(grey, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBORS,
                                     minSize=(min_side, min_side))
    boxes = [(round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
             for x, y, w, h in np.asarray(found, dtype=np.float64).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


@dataclass(frozen=True)
class BoxToCrop:
    """crop centre = box centre + (shift_x * box width, shift_y * box height); crop width = width_scale *
    box width, crop height = height_scale * box height (centres in pixel-centre coordinates)."""

    shift_x: float
    shift_y: float
    width_scale: float
    height_scale: float

    def crop_box(self, box: Box, image_wh: tuple[int, int]) -> Box:
        """The training crop for face `box` in an image of `image_wh`, clamped to the image as training crops
        are (`datasets.transforms.clamp_box`: the part inside the image).

        Example: box (100, 100, 200, 200) with shifts (0, 0.1) and scales (1.2, 1.2): centre (149.5, 159.5),
        side 120: (90, 100, 210, 220).
        """
        x0, y0, x1, y1 = box
        width, height = x1 - x0, y1 - y0
        cx = (x0 + x1 - 1) / 2 + self.shift_x * width
        cy = (y0 + y1 - 1) / 2 + self.shift_y * height
        crop_w, crop_h = max(1, round(self.width_scale * width)), max(1, round(self.height_scale * height))
        left, top = round(cx - (crop_w - 1) / 2), round(cy - (crop_h - 1) / 2)
        return clamp_box((left, top, left + crop_w, top + crop_h), image_wh)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_box_to_crop(face_boxes: np.ndarray, crop_boxes: np.ndarray) -> BoxToCrop:
    """The `BoxToCrop` that best sends detector boxes to training crops: medians of the per-face ratios.

    face_boxes, crop_boxes: (N, 4) (x0, y0, x1, y1) of the same N faces, N >= 1.
    """
    face = np.asarray(face_boxes, dtype=np.float64)
    crop = np.asarray(crop_boxes, dtype=np.float64)
    if face.ndim != 2 or face.shape[1] != 4 or face.shape != crop.shape or len(face) == 0:
        raise ValueError(f"expected two (N, 4) box arrays with N >= 1, got {face.shape} and {crop.shape}")
    face_wh, crop_wh = face[:, 2:] - face[:, :2], crop[:, 2:] - crop[:, :2]  # (N, 2)
    shift = ((crop[:, :2] + crop[:, 2:]) - (face[:, :2] + face[:, 2:])) / 2 / face_wh  # (N, 2) centre offsets
    scale = crop_wh / face_wh  # (N, 2)
    (shift_x, shift_y), (width_scale, height_scale) = np.median(shift, axis=0), np.median(scale, axis=0)
    return BoxToCrop(float(shift_x), float(shift_y), float(width_scale), float(height_scale))


def face_crop(image_rgb: np.ndarray, crop_box: Box, size: int, work_side: int = 0) -> np.ndarray:
    """The (size, size, 3) detector input for `crop_box` of a photo, made as the training crops are: the box
    cut out and resized bilinearly, aspect not kept (`datasets.transforms.crop_resize`).

    work_side: the typical side of the training crops in their photos' pixels (0: unknown). A box more
    than twice that is first shrunk with area averaging to about that side, so that a face in a
    4,000-pixel photo reaches the detector as sharp (and as blurred) as a face of the training photos did.
    """
    x0, y0, x1, y1 = crop_box
    longer = max(x1 - x0, y1 - y0)
    if not work_side or longer <= 2 * work_side:
        return crop_resize(image_rgb, crop_box, size)
    factor = work_side / longer
    region = cv2.resize(image_rgb[y0:y1, x0:x1], (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))),
                        interpolation=cv2.INTER_AREA)
    return crop_resize(region, (0, 0, region.shape[1], region.shape[0]), size)
