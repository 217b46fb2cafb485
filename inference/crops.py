"""From a face box to the crop a landmark model was trained on, and the detector inputs of a face.

The models are trained on landmark-driven crops (the annotated points' box widened by the margin
`data.tight`, `datasets.transforms.landmark_crop_box`), which a face finder's box does not give. `BoxToCrop`
is the map from a face box to that crop: the crop's centre is the box centre shifted by a fraction of the box
size, and its sides are multiples of the box sides. `fit_box_to_crop` learns it from faces whose both boxes
are known (MTFL training photos); checkpoints that ship with a model carry it, with the finder it was fitted
on (`FaceCropping.finder`: a map fitted on one finder's boxes is wrong on another's).

The per-face pipeline that detect.py and export_model.py share: a face box -> its training crop
(`FaceCropping`: the `BoxToCrop` map and the typical crop side of a checkpoint) -> the detector input and the
region it shows (`face_input`), whose points map back with `datasets.transforms.crop_to_image_xy`; the looks
are further maps of the same box (shifted crops) that the detector also sees.

Boxes are (x0, y0, x1, y1) in integer pixels, x1 and y1 exclusive, as in datasets/transforms.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np

from datasets.transforms import clamp_box, crop_resize
from inference.finders import DEFAULT_FINDER, FINDERS, photo_faces, thread_finder
from inference.photo import Box, Photo
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED
from utils.metrics import RidgeModel


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


@dataclass(frozen=True)
class FaceCropping:
    """How a checkpoint turns a face box into its detector input: the `BoxToCrop` map to the training crop,
    and `work_side`, the median side in pixels of the training crops (`face_crop`).

    looks: more maps from the face box to slightly other crops (scaled, shifted) that the detector also sees;
    looks_regressor: the ridge map from the points of all of them, (1 + len(looks)) x K points in the main
    crop's 128-px pixels, to the five named points there. Several looks average out what one crop's framing
    adds to the points (export_model.py fits both; absent in older checkpoints). finder: the face finder whose
    boxes the maps were fitted on (`inference.finders.FINDERS`; "haar" in checkpoints older than the field).
    The maps start from the finder's anchor (`inference.finders.Found`): for YuNet the box of its five points;
    box_to_anchor (None: the anchor is the box itself) maps a face box given without one (`--box`) to the
    anchor the finder would give, fitted on the finder's own face boxes.
    """

    box_to_crop: BoxToCrop
    work_side: int
    looks: tuple[BoxToCrop, ...] = ()
    looks_regressor: RidgeModel | None = None
    finder: str = DEFAULT_FINDER
    box_to_anchor: BoxToCrop | None = None

    def to_dict(self) -> dict:
        data = {"box_to_crop": self.box_to_crop.to_dict(), "work_side": self.work_side, "finder": self.finder}
        if self.box_to_anchor is not None:
            data["box_to_anchor"] = self.box_to_anchor.to_dict()
        if self.looks:
            data["looks"] = [look.to_dict() for look in self.looks]
            data["looks_regressor"] = self.looks_regressor.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object, where: str, num_points: int | None = None) -> "FaceCropping":
        """The cropping of a checkpoint's `face_crop` entry; a one-line UserError naming `where` if malformed
        (with `num_points`, also if its looks regressor does not map that many points per look)."""
        maps = [data.get("box_to_crop")] + list(data.get("looks", [])) if isinstance(data, dict) else [None]
        anchored = isinstance(data, dict) and "box_to_anchor" in data
        maps += [data["box_to_anchor"]] if anchored else []
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
        finder = data.get("finder", "haar")  # older checkpoints: fitted on the Haar cascade, the only finder then
        if finder not in FINDERS:
            raise UserError(f"{where}: its face_crop was fitted on the face finder {finder!r}; expected one of "
                            f"{', '.join(FINDERS)}")
        box_to_anchor = BoxToCrop(**values.pop()) if anchored else None
        looks = tuple(BoxToCrop(**value) for value in values[1:])
        regressor = None
        if looks:
            regressor = RidgeModel.from_dict(data.get("looks_regressor"), f"{where} (face_crop looks_regressor)")
            inputs = 2 * (1 + len(looks)) * (num_points or regressor.weights.shape[1] // 2 // (1 + len(looks)))
            if regressor.weights.shape != (2 * NUM_ANNOTATED, inputs):
                raise UserError(f"{where}: its looks regressor has shape {regressor.weights.shape}; expected "
                                f"({2 * NUM_ANNOTATED}, {inputs}): {1 + len(looks)} looks of K points to the five "
                                "named points")
        return cls(BoxToCrop(**values[0]), work_side, looks, regressor, finder, box_to_anchor)


class FaceInput(NamedTuple):
    """One face of a photo, ready for the detector.

    face_box: the face box found or given, in full-image pixels (for a centre or full crop: the region itself).
    seen_box: the region the crop shows, in full-image pixels (edges; fractional for a reduced decode whose scale
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
    """(seen box in full-image pixels, (size, size, 3) crop) of one map of a face box: `BoxToCrop.crop_box`,
    clamped to the photo, cut from its (maybe reduced) pixels by `face_crop`."""
    box = photo.pixel_box(box_to_crop.crop_box(face_box, photo.size_wh))
    return photo.stored_box(box), face_crop(photo.pixels, box, size, work_side)


def face_input(photo: Photo, face_box: Box, size: int, cropping: FaceCropping | None = None,
               anchor: Box | None = None) -> FaceInput:
    """The detector input of one face box (full-image pixels) of a photo.

    With `cropping` (a checkpoint's face-crop map): the training crop of the face's anchor (the finder's,
    or, for a box given without one, `cropping.box_to_anchor` of the box, or the box itself when the map has
    none), by `BoxToCrop.crop_box`, clamped to the photo, made by `face_crop` with the checkpoint's work side,
    and the same for each further look.
    Without: the box itself is the crop (`crop_for_model`). On a reduced photo the region is cut from the
    reduced pixels (`Photo.pixel_box`).
    """
    face_box = tuple(int(v) for v in face_box)
    if cropping is None:
        box = photo.pixel_box(face_box)
        return FaceInput(face_box, photo.stored_box(box), crop_for_model(photo.pixels, box, size))
    if anchor is None:
        anchor = cropping.box_to_anchor.crop_box(face_box, photo.size_wh) if cropping.box_to_anchor else face_box
    seen_box, crop = mapped_crop(photo, anchor, size, cropping.box_to_crop, cropping.work_side)
    looks = tuple(mapped_crop(photo, anchor, size, look, cropping.work_side) for look in cropping.looks)
    return FaceInput(face_box, seen_box, crop, looks)


def photo_face_inputs(photo: Photo, size: int, cropping: FaceCropping) -> list[FaceInput]:
    """Every face that the finder of `cropping` finds in a photo (largest first), each through `face_input`:
    what detect.py's default crop does, and what export_model.py fits its regressor and expected numbers on."""
    return [face_input(photo, found.box, size, cropping, found.anchor)
            for found in photo_faces(photo, thread_finder(cropping.finder))]
