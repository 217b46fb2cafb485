"""Finding the faces of a photo: YuNet (the default) or OpenCV's frontal Haar cascade.

- `yunet`: the small CNN face detector of libfacedetection (Shiqi Yu et al., Apache-2.0), the fixed-size
  640 x 640 ONNX file `checkpoints/yunet_s_640_640.onnx` that this repository ships (its source and sha256 in
  checkpoints/README.md; the sha256 is checked when it is loaded), run by OpenCV's `cv2.FaceDetectorYN`. The
  photo is scaled so that its longer side is 640 px and padded to 640 x 640 at the bottom and right.
  It finds faces turned away from the camera that the cascade misses.
- `haar`: `haarcascade_frontalface_alt2.xml`, which the OpenCV 4 wheels ship inside the package, on a grey
  copy scaled down to at most 640 px. Frontal faces only.

Both give boxes in the photo's full pixels, largest first, each with its *anchor*: the box the face-crop map
starts from. For the cascade the anchor is the face box; for YuNet it is the box of YuNet's own five points
(eyes, nose tip, mouth corners), which places the training crop (the annotated points' box widened by a
margin) far better than YuNet's face box does: on 750 mtfl-train photos its predicted crop centre is off by
1.8 % of the crop side across and 1.7 % down, against 9.0 and 2.8 % from YuNet's box (2.1 and 2.9 % from the
cascade's). The finders frame a face differently, so a checkpoint's face-crop map is fitted on one of them and
records it (`inference.crops.FaceCropping.finder`).

Boxes are (x0, y0, x1, y1) in integer pixels, x1 and y1 exclusive, as in datasets/transforms.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from datasets.transforms import clamp_box
from inference.photo import Box, Photo
from utils.errors import UserError

FINDERS = ("yunet", "haar")
DEFAULT_FINDER = "yunet"
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
YUNET_FILE = Path(__file__).resolve().parents[1] / "checkpoints" / "yunet_s_640_640.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_SIDE = 640  # the fixed input side of the shipped ONNX file
YUNET_SCORE = 0.6  # lowest face score kept (higher: fewer false faces, more missed ones)
YUNET_NMS = 0.3  # overlap (IoU) above which the weaker of two boxes is dropped
DETECT_MAX_SIDE = 640  # the cascade searches a copy whose longer side is at most this
MIN_FACE_FRACTION = 0.08  # the smallest face searched for, as a fraction of the copy's shorter side
SCALE_STEP = 1.1  # cascade scale factor between search sizes
MIN_NEIGHBORS = 3  # detections a face needs around it (higher: fewer false faces, more missed ones)


class Found(NamedTuple):
    """A face found: its box and its anchor, the box its face-crop map starts from (see above)."""

    box: Box
    anchor: Box


@dataclass(frozen=True)
class FaceFinder:
    """A named face finder: `find(image_rgb)` -> the `Found` faces of an (H, W, 3) uint8 RGB image in its pixels,
    largest box first. Not shared between threads (`thread_finder`)."""

    name: str
    find: Callable[[np.ndarray], list[Found]]


def largest_first(boxes: list) -> list:
    """Boxes (or `Found` faces, by their box) sorted by area, largest first (stable)."""
    def area(item) -> int:
        x0, y0, x1, y1 = item.box if isinstance(item, Found) else item
        return (x1 - x0) * (y1 - y0)

    return sorted(boxes, key=lambda item: -area(item))


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
    """Haar-cascade face boxes of an (H, W, 3) uint8 RGB photo in its own pixels, largest first."""
    height, width = image_rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    min_side = max(20, round(MIN_FACE_FRACTION * min(grey.shape)))
    found = cascade.detectMultiScale(grey, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBORS,
                                     minSize=(min_side, min_side))
    return largest_first([(round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
                          for x, y, w, h in np.asarray(found, dtype=np.float64).reshape(-1, 4)])


_CHECKED: set[Path] = set()


def check_yunet_file(path: Path = YUNET_FILE) -> Path:
    """`path` if it holds the shipped YuNet file (sha256 checked once per process); a one-line UserError if not."""
    if path in _CHECKED:
        return path
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the YuNet face finder ({exc.strerror}); restore it with git checkout, "
                        "or use --faces haar with a checkpoint fitted on Haar boxes") from None
    if digest != YUNET_SHA256:
        raise UserError(f"{path}: sha256 {digest[:12]}... is not the shipped YuNet file's {YUNET_SHA256[:12]}... "
                        "(checkpoints/README.md); restore it with git checkout")
    _CHECKED.add(path)
    return path


def load_yunet(path: Path = YUNET_FILE) -> cv2.FaceDetectorYN:
    """OpenCV's YuNet runner on the checked ONNX file, for 640 x 640 inputs."""
    return cv2.FaceDetectorYN.create(str(check_yunet_file(path)), "", (YUNET_SIDE, YUNET_SIDE), YUNET_SCORE,
                                     YUNET_NMS, 5000)


def yunet_detections(image_rgb: np.ndarray, net: cv2.FaceDetectorYN) -> tuple[np.ndarray, np.ndarray]:
    """YuNet's faces of an (H, W, 3) uint8 RGB photo: ((N, 4) boxes x0, y0, x1, y1 and (N, 5, 2) its own five
    points, YuNet's order: the eye on the image's left, the other eye, nose tip, mouth corners left then
    right), float, in the photo's pixels (edges; points with the pixel-centre convention), in YuNet's order.

    The photo is resized so that its longer side is `YUNET_SIDE` (area averaging when it shrinks, bilinear
    when it grows) and padded with black to a square at the bottom and right.
    """
    height, width = image_rgb.shape[:2]
    scale = YUNET_SIDE / max(height, width)
    size = (min(YUNET_SIDE, round(width * scale)), min(YUNET_SIDE, round(height * scale)))  # (w, h)
    small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    padded = np.zeros((YUNET_SIDE, YUNET_SIDE, 3), np.uint8)
    padded[:size[1], :size[0]] = small[..., ::-1]  # BGR, as YuNet was trained
    _, found = net.detect(padded)
    found = np.zeros((0, 15)) if found is None else found.astype(np.float64)  # (N, 15): x, y, w, h, 5 x (x, y), score
    back = np.array([width / size[0], height / size[1]])
    boxes = np.concatenate([found[:, :2], found[:, :2] + found[:, 2:4]], axis=1) * np.tile(back, 2)  # (N, 4)
    points = (found[:, 4:14].reshape(-1, 5, 2) + 0.5) * back - 0.5  # (N, 5, 2)
    return boxes, points


def points_box(points_xy: np.ndarray) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of (N, 2) pixel-centre points: x1 and y1 one past the last pixel, as a box of
    pixels holding them (the annotated points' box of `datasets.transforms.landmark_crop_box` likewise)."""
    return (*points_xy.min(axis=0), *(points_xy.max(axis=0) + 1))


def yunet_faces(image_rgb: np.ndarray, net: cv2.FaceDetectorYN) -> list[Found]:
    """YuNet's faces of an (H, W, 3) uint8 RGB photo in its own pixels (`yunet_detections`), largest box first:
    each face's box and, as its anchor, the box of its five points, edges rounded and clamped to the photo."""
    height, width = image_rgb.shape[:2]
    boxes, points = yunet_detections(image_rgb, net)

    def pixels(box) -> Box:
        return clamp_box(tuple(round(v) for v in box), (width, height))

    return largest_first([Found(pixels(box), pixels(points_box(p))) for box, p in zip(boxes, points)])


def load_finder(name: str) -> FaceFinder:
    """A new `FaceFinder` by name (one of `FINDERS`)."""
    if name == "yunet":
        net = load_yunet()
        return FaceFinder(name, lambda image: yunet_faces(image, net))
    if name == "haar":
        cascade = load_face_cascade()
        return FaceFinder(name, lambda image: [Found(box, box) for box in find_faces(image, cascade)])
    raise UserError(f"face finder {name!r}: expected one of {', '.join(FINDERS)}")


_THREAD_STATE = threading.local()


def thread_finder(name: str = DEFAULT_FINDER) -> FaceFinder:
    """`load_finder(name)` once per thread (OpenCV's finders are not shared between threads)."""
    finders = _THREAD_STATE.__dict__.setdefault("finders", {})
    if name not in finders:
        finders[name] = load_finder(name)
    return finders[name]


def photo_faces(photo: Photo, finder: FaceFinder) -> list[Found]:
    """The finder's faces on a photo's pixels, boxes and anchors in full pixels (edges scaled, rounded), largest
    first."""
    sx, sy = photo.scale_xy
    width, height = photo.size_wh

    def full(box: Box) -> Box:
        x0, y0, x1, y1 = box
        return clamp_box((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)), (width, height))

    return [Found(full(found.box), full(found.anchor)) for found in finder.find(photo.pixels)]


def face_holding(boxes: list[Box], point_xy: np.ndarray) -> int | None:
    """The index of the first (largest, as the finders order them) box that holds the point (x0 <= x <= x1,
    y0 <= y <= y1), or None: how export_model.py and bench/detect.py pick the annotated face of a photo."""
    x, y = (float(v) for v in np.asarray(point_xy).reshape(2))
    return next((i for i, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1), None)
