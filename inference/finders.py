"""Finding the faces of a photo: YuNet (the default) or OpenCV's frontal Haar cascade.

- `yunet`: the small CNN face detector of libfacedetection (Shiqi Yu et al., Apache-2.0), the fixed-size
  640 x 640 ONNX file `checkpoints/yunet_s_640_640.onnx` that this repository ships (its source and sha256 in
  checkpoints/README.md; the sha256 is checked when it is loaded), run by OpenCV's `cv2.FaceDetectorYN`. The
  photo is scaled so that its longer side is 640 px and padded to 640 x 640 at the bottom and right.
  It finds faces turned away from the camera that the cascade misses.
- `haar`: `haarcascade_frontalface_alt2.xml`, which the OpenCV 4 wheels ship inside the package, on a grey
  copy scaled down to at most 640 px. Frontal faces only.

Both give boxes in the photo's full pixels, largest first. The two finders frame a face differently (YuNet's
boxes are tighter and not square), so a checkpoint's face-crop map is fitted on one of them and records it
(`inference.crops.FaceCropping.finder`).

Boxes are (x0, y0, x1, y1) in integer pixels, x1 and y1 exclusive, as in datasets/transforms.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class FaceFinder:
    """A named face finder: `find(image_rgb)` -> boxes of an (H, W, 3) uint8 RGB image in its pixels, largest
    first. Not shared between threads (`thread_finder`)."""

    name: str
    find: Callable[[np.ndarray], list[Box]]


def largest_first(boxes: list[Box]) -> list[Box]:
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


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


def yunet_faces(image_rgb: np.ndarray, net: cv2.FaceDetectorYN) -> list[Box]:
    """YuNet face boxes of an (H, W, 3) uint8 RGB photo in its own pixels, largest first.

    The photo is resized so that its longer side is `YUNET_SIDE` (area averaging when it shrinks, bilinear
    when it grows) and padded with black to a square at the bottom and right; box edges divide back by the
    scale and are clamped to the photo.
    """
    height, width = image_rgb.shape[:2]
    scale = YUNET_SIDE / max(height, width)
    size = (min(YUNET_SIDE, round(width * scale)), min(YUNET_SIDE, round(height * scale)))  # (w, h)
    small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    padded = np.zeros((YUNET_SIDE, YUNET_SIDE, 3), np.uint8)
    padded[:size[1], :size[0]] = small[..., ::-1]  # BGR, as YuNet was trained
    _, found = net.detect(padded)
    sx, sy = width / size[0], height / size[1]
    return largest_first([clamp_box((round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy)),
                                    (width, height))
                          for x, y, w, h in (found[:, :4] if found is not None else np.zeros((0, 4)))])


def load_finder(name: str) -> FaceFinder:
    """A new `FaceFinder` by name (one of `FINDERS`)."""
    if name == "yunet":
        net = load_yunet()
        return FaceFinder(name, lambda image: yunet_faces(image, net))
    if name == "haar":
        cascade = load_face_cascade()
        return FaceFinder(name, lambda image: find_faces(image, cascade))
    raise UserError(f"face finder {name!r}: expected one of {', '.join(FINDERS)}")


_THREAD_STATE = threading.local()


def thread_finder(name: str = DEFAULT_FINDER) -> FaceFinder:
    """`load_finder(name)` once per thread (OpenCV's finders are not shared between threads)."""
    finders = _THREAD_STATE.__dict__.setdefault("finders", {})
    if name not in finders:
        finders[name] = load_finder(name)
    return finders[name]


def photo_faces(photo: Photo, finder: FaceFinder) -> list[Box]:
    """The finder's boxes on a photo's pixels, in full pixels (edges scaled, rounded), largest first."""
    sx, sy = photo.scale_xy
    width, height = photo.size_wh
    return [clamp_box((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)), (width, height))
            for x0, y0, x1, y1 in finder.find(photo.pixels)]


def face_holding(boxes: list[Box], point_xy: np.ndarray) -> int | None:
    """The index of the first (largest, as the finders order them) box that holds the point (x0 <= x <= x1,
    y0 <= y <= y1), or None: how export_model.py and bench/detect.py pick the annotated face of a photo."""
    x, y = (float(v) for v in np.asarray(point_xy).reshape(2))
    return next((i for i, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1), None)
