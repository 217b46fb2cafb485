"""The landmark model on photos, as one Python call: `find_landmarks(image_or_path, model=None)`.

    import sys; sys.path.insert(0, "/path/to/this/repository")   # from a notebook outside it
    from inference import find_landmarks
    for face in find_landmarks("group.jpg"):                     # the shipped model, YuNet's faces
        print(face.face_box, face.named_xy)                      # (x0, y0, x1, y1); (5, 2) named points

detect.py is the command line over the same functions (`load_detector`, `photo_inputs`, `locate_faces`),
batching the faces of many photos.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference.crops import FaceCropping, FaceInput, face_input, photo_face_inputs
from inference.photo import DEFAULT_MAX_PIXELS, Box, Photo, read_photo
from inference.points import FaceLandmarks, locate_faces, read_named_points
from model import load_model
from utils.checkpoint import find_checkpoint
from utils.errors import UserError
from utils.metrics import RidgeModel

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "mtfl_k10.pt"  # the default model


class Detector:
    """A loaded checkpoint with what the photo pipeline needs of it: the model (eval mode), its crop side
    `size`, K, its face-crop map (`cropping`, None without one) and named-point regressor (None without)."""

    def __init__(self, model: torch.nn.Module, file: Path, ckpt: dict, device: torch.device, num_points: int,
                 cropping: FaceCropping | None, regressor: RidgeModel | None):
        self.model, self.file, self.ckpt, self.device = model.eval(), file, ckpt, device
        self.size, self.num_points = int(ckpt["config"]["data"]["image_size"]), num_points
        self.cropping, self.regressor = cropping, regressor

    @property
    def finder(self) -> str | None:
        """The face finder the face-crop map was fitted on (None without a map)."""
        return self.cropping.finder if self.cropping else None


def load_detector(checkpoint: str | Path | None = None, device: torch.device | str = "cpu") -> Detector:
    """The model of a checkpoint file or run folder (default: the shipped one), its face-crop map and
    named-point regressor. A missing or malformed file is a one-line UserError."""
    if checkpoint is None and not SHIPPED_CHECKPOINT.is_file():
        raise UserError(f"{SHIPPED_CHECKPOINT}: the shipped model is not in this copy of the repository; make it "
                        "with bash scripts/ship_model.sh MTFL_FOLDER, or pass a checkpoint of your own")
    file = find_checkpoint(checkpoint or SHIPPED_CHECKPOINT)
    device = torch.device(device)
    model, model_cfg, ckpt = load_model(file, device)
    cropping = (FaceCropping.from_dict(ckpt["face_crop"], str(file), model_cfg.num_points) if "face_crop" in ckpt
                else None)
    return Detector(model, file, ckpt, device, model_cfg.num_points, cropping,
                    read_named_points(ckpt, model_cfg.num_points, str(file)))


@lru_cache(maxsize=1)
def shipped_detector() -> Detector:
    """The shipped model on the CPU, loaded once per process."""
    return load_detector(None, "cpu")


def as_photo(image_or_path: Any, upright: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """A `Photo` of a path (str or Path: decoded, upright by its EXIF orientation unless upright=False), an
    (H, W, 3) uint8 RGB array (or (H, W) grey), or a PIL image (converted to RGB, taken as it is)."""
    if isinstance(image_or_path, (str, Path)):
        return read_photo(Path(image_or_path), upright, max_pixels)
    if isinstance(image_or_path, Image.Image):
        image_or_path = np.asarray(image_or_path.convert("RGB"))
    image = np.asarray(image_or_path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise UserError(f"an image of shape {image.shape} and dtype {image.dtype}: expected (H, W, 3) uint8 RGB, "
                        "(H, W) uint8 grey, a PIL image or a path")
    return Photo.of(np.ascontiguousarray(image))


def photo_inputs(photo: Photo, detector: Detector, boxes: list[Box] | None = None) -> list[FaceInput]:
    """The detector inputs of a photo's faces: those the checkpoint's finder finds (boxes None), or the given
    face boxes (full pixels), largest first, each through the checkpoint's face-crop map when it has one."""
    if boxes is None:
        if detector.cropping is None:
            raise UserError(f"{detector.file}: no face-crop map (from a face box to the crop it was trained on) to "
                            "find faces with; export one with export_model.py, or give face boxes")
        return photo_face_inputs(photo, detector.size, detector.cropping)
    ordered = sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))  # largest first, stable
    return [face_input(photo, box, detector.size, detector.cropping) for box in ordered]


def find_landmarks(image_or_path: Any, model: Detector | str | Path | None = None, *,
                   boxes: list[Box] | None = None, upright: bool = True) -> list[FaceLandmarks]:
    """The landmarks of every face of one image.

    image_or_path: a path (str or Path; turned upright by its EXIF orientation, as viewers show it, unless
        upright=False), an (H, W, 3) uint8 array in RGB order (OpenCV's BGR must be flipped: image[..., ::-1]),
        an (H, W) uint8 grey array, or a PIL image (its pixels as they are; `PIL.ImageOps.exif_transpose`
        turns one upright).
    model: a `Detector` (`load_detector`), a checkpoint file or run folder, or None for the shipped model.
    boxes: face boxes (x0, y0, x1, y1) to use instead of finding faces.
    Returns one `FaceLandmarks` per face, largest first (the `face` index of detect.py's landmarks.csv):
    face_box (x0, y0, x1, y1) integer pixels, x1 and y1 exclusive; points_xy (K, 2) the raw points;
    named_xy (5, 2) left_eye, right_eye, nose, left_mouth, right_mouth (None without a regressor); all (x, y)
    in the image's pixels (the displayed frame for a path), pixel-centre convention.
    """
    detector = model if isinstance(model, Detector) else shipped_detector() if model is None else load_detector(model)
    faces = photo_inputs(as_photo(image_or_path, upright), detector, boxes)
    looks_regressor = detector.cropping.looks_regressor if detector.cropping else None
    return locate_faces(detector.model, faces, detector.size, detector.device, detector.regressor,
                        looks_regressor=looks_regressor)
