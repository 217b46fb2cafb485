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

Photos of any size (`read_photo`): a large JPEG is decoded reduced by 2, 4 or 8 (libjpeg scales while it
decodes, far cheaper than decoding every pixel) so that its longer side stays at least `REDUCED_MIN_SIDE`;
the `Photo` keeps the stored size and the scale, and every box and point outside it is in the stored
image's pixels. The per-face pipeline that detect.py and export_model.py share: a face box -> its
training crop (`FaceCropping`: the `BoxToCrop` map and the typical crop side of a checkpoint) -> the
detector input and the region it shows (`face_input`), whose points map back with
`datasets.transforms.crop_to_image_xy`.

Boxes are (x0, y0, x1, y1) in integer pixels, x1 and y1 exclusive, as in datasets/transforms.py.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from datasets.records import JPEG_START_OF_IMAGE, image_size_wh, jpeg_is_complete, read_image_rgb
from datasets.transforms import clamp_box, crop_resize
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED
from utils.metrics import RidgeModel

Box = tuple[int, int, int, int]
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
DETECT_MAX_SIDE = 640  # faces are searched on a copy whose longer side is at most this
MIN_FACE_FRACTION = 0.08  # the smallest face searched for, as a fraction of the copy's shorter side
SCALE_STEP = 1.1  # cascade scale factor between search sizes
MIN_NEIGHBORS = 3  # detections a face needs around it (higher: fewer false faces, more missed ones)
REDUCED_MIN_SIDE = 1000  # photos are decoded reduced by the largest of 2, 4, 8 that keeps the longer side >= this
REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


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


def crop_for_model(image_rgb: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut `box` out of an (H, W, 3) image and resize it to (size, size, 3), aspect not kept: the detector
    input of a region given without a face-crop map (detect.py's centre, full and box crops).

    Area averaging when the box shrinks (no aliasing on large photos), bilinear when it grows; both align
    pixel centres, so `datasets.transforms.crop_to_image_xy` inverts the geometry exactly.
    """
    x0, y0, x1, y1 = box
    shrinks = x1 - x0 > size or y1 - y0 > size
    return cv2.resize(image_rgb[y0:y1, x0:x1], (size, size),
                      interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------------
# Photos of any size
# ---------------------------------------------------------------------------------------------


def reduction_factor(size_wh: tuple[int, int]) -> int:
    """1, 2, 4 or 8: the largest that keeps the longer side at least `REDUCED_MIN_SIDE` (1 below 2,000 px).

    Examples: 400 -> 1, 1999 -> 1, 2000 -> 2, 4400 -> 4 (1,100 px), 16000 -> 8 (2,000 px).
    """
    longer = max(size_wh)
    return max(f for f in (1, 2, 4, 8) if f == 1 or longer / f >= REDUCED_MIN_SIDE)


@dataclass(frozen=True, eq=False)
class Photo:
    """A photo's pixels, maybe a reduced decode, and the size of the stored image.

    pixels: (h, w, 3) uint8 RGB. size_wh: the stored image's (width, height). scale_xy: stored pixels per
    pixel of `pixels` ((1, 1) when not reduced). Pixel j of `pixels` covers stored pixels [j * s, (j + 1) * s)
    (box edges scale by s), so with the pixel-centre convention x_stored = (x + 0.5) * s - 0.5.
    """

    pixels: np.ndarray
    size_wh: tuple[int, int]
    scale_xy: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def of(cls, image_rgb: np.ndarray) -> "Photo":
        """An image in memory at its own size."""
        return cls(image_rgb, (image_rgb.shape[1], image_rgb.shape[0]))

    @property
    def reduced(self) -> bool:
        return self.scale_xy != (1.0, 1.0)

    def to_pixels_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Stored-image pixels -> pixels of `pixels`, any shape (..., 2), float64."""
        return (np.asarray(points_xy, dtype=np.float64) + 0.5) / np.asarray(self.scale_xy) - 0.5

    def pixel_box(self, box: Box) -> Box:
        """A box of stored pixels -> the nearest box of `pixels` (edges divided by the scale, rounded), clamped."""
        sx, sy = self.scale_xy
        x0, y0, x1, y1 = box
        height, width = self.pixels.shape[:2]
        return clamp_box((round(x0 / sx), round(y0 / sy), round(x1 / sx), round(y1 / sy)), (width, height))

    def pixel_edges(self, box: Box) -> tuple[float, float, float, float]:
        """A box of stored pixels -> its edges in pixels of `pixels` (divided by the scale, not rounded)."""
        sx, sy = self.scale_xy
        return box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy

    def stored_box(self, box: Box) -> tuple[float, float, float, float]:
        """A box of `pixels` -> the region it shows in stored pixels (edges times the scale; fractional when the
        scale is not a whole number)."""
        sx, sy = self.scale_xy
        return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def read_photo(path: Path) -> Photo:
    """Decode a photo (EXIF orientation ignored, as `datasets.records.read_image_rgb`), reduced when large.

    The size comes from the header (Pillow). A JPEG whose longer side is 2,000 px or more is decoded by
    libjpeg at 1/2, 1/4 or 1/8 (`reduction_factor`), which gives ceil(W / f) x ceil(H / f) pixels, each
    covering f x f stored pixels exactly; other formats are decoded whole and shrunk with area averaging
    (scale W / w). Errors are `read_image_rgb`'s one-line UserErrors (empty, truncated, not an image).
    """
    size = image_size_wh(path)  # no warnings.catch_warnings here: it is not thread-safe (quiet_header_reads)
    factor = reduction_factor(size) if size else 1
    if factor > 1:
        try:
            data = path.read_bytes()
        except OSError:
            data = b""  # read_image_rgb below names the problem
        if data.startswith(JPEG_START_OF_IMAGE) and jpeg_is_complete(data):
            image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
            if image is not None and image.shape[:2] == (math.ceil(size[1] / factor), math.ceil(size[0] / factor)):
                return Photo(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size, (float(factor), float(factor)))
    image = read_image_rgb(path)
    height, width = image.shape[:2]
    factor = reduction_factor((width, height))
    if factor == 1:
        return Photo(image, (width, height))
    small = cv2.resize(image, (round(width / factor), round(height / factor)), interpolation=cv2.INTER_AREA)
    return Photo(small, (width, height), (width / small.shape[1], height / small.shape[0]))


def quiet_header_reads() -> None:
    """Silence, for this process, Pillow's warning about very large images, whose header `read_photo` reads (it
    decodes them with OpenCV): call it before worker threads start, since `warnings.catch_warnings` around each
    read would race between threads and could leave the filters of another thread in place."""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


_THREAD_STATE = threading.local()


def thread_cascade() -> cv2.CascadeClassifier:
    """`load_face_cascade()` once per thread (a classifier is not shared between threads)."""
    if getattr(_THREAD_STATE, "cascade", None) is None:
        _THREAD_STATE.cascade = load_face_cascade()
    return _THREAD_STATE.cascade


def photo_faces(photo: Photo, cascade: cv2.CascadeClassifier) -> list[Box]:
    """`find_faces` on a photo's pixels, the boxes in stored pixels (edges scaled, rounded), largest first."""
    sx, sy = photo.scale_xy
    width, height = photo.size_wh
    return [clamp_box((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)), (width, height))
            for x0, y0, x1, y1 in find_faces(photo.pixels, cascade)]


def face_holding(boxes: list[Box], point_xy: np.ndarray) -> int | None:
    """The index of the first (largest, as `find_faces` orders them) box that holds the point (x0 <= x <= x1,
    y0 <= y <= y1), or None: how export_model.py and bench/detect.py pick the annotated face of a photo."""
    x, y = (float(v) for v in np.asarray(point_xy).reshape(2))
    return next((i for i, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1), None)


# ---------------------------------------------------------------------------------------------
# The per-face pipeline: face box -> training crop -> detector input
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceCropping:
    """How a checkpoint turns a face box into its detector input: the `BoxToCrop` map to the training crop,
    and `work_side`, the median side in pixels of the training crops (`face_crop`).

    looks: more maps from the face box to slightly other crops (scaled, shifted) that the detector also sees;
    looks_regressor: the ridge map from the points of all of them, (1 + len(looks)) x K points in the main
    crop's 128-px pixels, to the five named points there. Several looks average out what one crop's framing
    adds to the points (export_model.py fits both; absent in older checkpoints).
    """

    box_to_crop: BoxToCrop
    work_side: int
    looks: tuple[BoxToCrop, ...] = ()
    looks_regressor: RidgeModel | None = None

    def to_dict(self) -> dict:
        data = {"box_to_crop": self.box_to_crop.to_dict(), "work_side": self.work_side}
        if self.looks:
            data["looks"] = [look.to_dict() for look in self.looks]
            data["looks_regressor"] = self.looks_regressor.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object, where: str, num_points: int | None = None) -> "FaceCropping":
        """The cropping of a checkpoint's `face_crop` entry; a one-line UserError naming `where` if malformed
        (with `num_points`, also if its looks regressor does not map that many points per look)."""
        maps = [data.get("box_to_crop")] + list(data.get("looks", [])) if isinstance(data, dict) else [None]
        try:
            values = [{key: float(m[key]) for key in ("shift_x", "shift_y", "width_scale", "height_scale")}
                      for m in maps]
            work_side = int(data["work_side"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: its face_crop entry is not a face-crop map ({type(exc).__name__}: {exc}); "
                            "expected box_to_crop {shift_x, shift_y, width_scale, height_scale} and work_side, as "
                            "export_model.py writes") from None
        for value in values:
            if not all(map(math.isfinite, value.values())) or min(value["width_scale"], value["height_scale"]) <= 0 \
                    or work_side < 0:
                raise UserError(f"{where}: face_crop {value}, work_side {work_side}: expected finite shifts, "
                                "positive scales and work_side >= 0")
        looks = tuple(BoxToCrop(**value) for value in values[1:])
        regressor = None
        if looks:
            regressor = RidgeModel.from_dict(data.get("looks_regressor"), f"{where} (face_crop looks_regressor)")
            inputs = 2 * (1 + len(looks)) * (num_points or regressor.weights.shape[1] // 2 // (1 + len(looks)))
            if regressor.weights.shape != (2 * NUM_ANNOTATED, inputs):
                raise UserError(f"{where}: its looks regressor has shape {regressor.weights.shape}; expected "
                                f"({2 * NUM_ANNOTATED}, {inputs}): {1 + len(looks)} looks of K points to the five "
                                "named points")
        return cls(BoxToCrop(**values[0]), work_side, looks, regressor)


class FaceInput(NamedTuple):
    """One face of a photo, ready for the detector.

    face_box: the face box found or given, in stored pixels (for a centre or full crop: the region itself).
    seen_box: the region the crop shows, in stored pixels (edges; fractional for a reduced decode whose scale
        is not whole): points of the crop map back with `crop_to_image_xy(points, seen_box, crop side)`.
    crop: (size, size, 3) uint8 RGB, the detector input.
    looks: (seen_box, crop) of each further look of the checkpoint's `FaceCropping.looks` (empty without).
    """

    face_box: Box
    seen_box: tuple[float, float, float, float]
    crop: np.ndarray
    looks: tuple[tuple[tuple[float, float, float, float], np.ndarray], ...] = ()


def mapped_crop(photo: Photo, face_box: Box, size: int, box_to_crop: BoxToCrop, work_side: int
                ) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """(seen box in stored pixels, (size, size, 3) crop) of one map of a face box: `BoxToCrop.crop_box`,
    clamped to the photo, cut from its (maybe reduced) pixels by `face_crop`."""
    box = photo.pixel_box(box_to_crop.crop_box(face_box, photo.size_wh))
    return photo.stored_box(box), face_crop(photo.pixels, box, size, work_side)


def face_input(photo: Photo, face_box: Box, size: int, cropping: FaceCropping | None = None) -> FaceInput:
    """The detector input of one face box (stored pixels) of a photo.

    With `cropping` (a checkpoint's face-crop map): the box's training crop (`BoxToCrop.crop_box`, clamped to
    the photo) made by `face_crop` with the checkpoint's work side, and the same for each further look.
    Without: the box itself is the crop (`crop_for_model`). On a reduced photo the region is cut from the
    reduced pixels (`Photo.pixel_box`).
    """
    face_box = tuple(int(v) for v in face_box)
    if cropping is None:
        box = photo.pixel_box(face_box)
        return FaceInput(face_box, photo.stored_box(box), crop_for_model(photo.pixels, box, size))
    seen_box, crop = mapped_crop(photo, face_box, size, cropping.box_to_crop, cropping.work_side)
    looks = tuple(mapped_crop(photo, face_box, size, look, cropping.work_side) for look in cropping.looks)
    return FaceInput(face_box, seen_box, crop, looks)


def photo_face_inputs(photo: Photo, size: int, cropping: FaceCropping,
                      cascade: cv2.CascadeClassifier | None = None) -> list[FaceInput]:
    """Every face the cascade finds in a photo (largest first), each through `face_input` with `cropping`:
    what detect.py's default crop does, and what export_model.py fits its regressor and expected numbers on."""
    return [face_input(photo, box, size, cropping) for box in photo_faces(photo, cascade or thread_cascade())]
