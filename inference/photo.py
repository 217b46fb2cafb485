"""Reading a photo for the landmark pipeline: any size, upright as viewers show it, within a pixel limit.

A large JPEG is decoded reduced by 2, 4 or 8 (libjpeg scales while it decodes, far cheaper than decoding
every pixel) so that its longer side stays at least `REDUCED_MIN_SIDE`; the `Photo` keeps the full size and
the scale, and every box and point outside it is in the full image's pixels.

Frames: by default the photo is turned as its EXIF orientation tag says (what every viewer shows: the
*displayed* frame), so a phone photo stored sideways is searched upright and its points come in the pixels
of the upright picture. `upright=False` keeps the *stored* frame (the pixel rows as the file holds them),
the frame of the annotated data sets (their points are in stored pixels).

The size comes from the header before anything is decoded: a photo of more than `max_pixels` (default
`DEFAULT_MAX_PIXELS`, 200 MP) is a one-line UserError naming the file and its size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from datasets.records import JPEG_START_OF_IMAGE, jpeg_is_complete, read_image_rgb
from datasets.transforms import clamp_box
from utils.errors import UserError

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) integer pixels, x1 and y1 exclusive
REDUCED_MIN_SIDE = 1000  # photos are decoded reduced by the largest of 2, 4, 8 that keeps the longer side >= this
REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
DEFAULT_MAX_PIXELS = 200_000_000  # a photo with more pixels than this is refused before decoding (200 MP)
FRAMES = ("displayed", "stored")  # EXIF orientation applied (what viewers show) / the file's pixel rows
EXIF_ORIENTATION = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees


def reduction_factor(size_wh: tuple[int, int]) -> int:
    """1, 2, 4 or 8: the largest that keeps the longer side at least `REDUCED_MIN_SIDE` (1 below 2,000 px).

    Examples: 400 -> 1, 1999 -> 1, 2000 -> 2, 4400 -> 4 (1,100 px), 16000 -> 8 (2,000 px).
    """
    longer = max(size_wh)
    return max(f for f in (1, 2, 4, 8) if f == 1 or longer / f >= REDUCED_MIN_SIDE)


@dataclass(frozen=True, eq=False)
class Photo:
    """A photo's pixels, maybe a reduced decode, and the size of the full image.

    pixels: (h, w, 3) uint8 RGB. size_wh: the full image's (width, height) in the photo's frame. scale_xy:
    full pixels per pixel of `pixels` ((1, 1) when not reduced). Pixel j of `pixels` covers full pixels
    [j * s, (j + 1) * s) (box edges scale by s), so with the pixel-centre convention x_full = (x + 0.5) * s - 0.5.
    frame: "displayed" (EXIF orientation applied) or "stored"; an array given in memory is its own frame.
    """

    pixels: np.ndarray
    size_wh: tuple[int, int]
    scale_xy: tuple[float, float] = (1.0, 1.0)
    frame: str = "stored"

    @classmethod
    def of(cls, image_rgb: np.ndarray) -> "Photo":
        """An (H, W, 3) uint8 RGB image in memory at its own size."""
        return cls(image_rgb, (image_rgb.shape[1], image_rgb.shape[0]))

    @property
    def reduced(self) -> bool:
        return self.scale_xy != (1.0, 1.0)

    def to_pixels_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Full-image pixels -> pixels of `pixels`, any shape (..., 2), float64."""
        return (np.asarray(points_xy, dtype=np.float64) + 0.5) / np.asarray(self.scale_xy) - 0.5

    def pixel_box(self, box: Box) -> Box:
        """A box of full pixels -> the nearest box of `pixels` (edges divided by the scale, rounded), clamped."""
        sx, sy = self.scale_xy
        x0, y0, x1, y1 = box
        height, width = self.pixels.shape[:2]
        return clamp_box((round(x0 / sx), round(y0 / sy), round(x1 / sx), round(y1 / sy)), (width, height))

    def pixel_edges(self, box: Box) -> tuple[float, float, float, float]:
        """A box of full pixels -> its edges in pixels of `pixels` (divided by the scale, not rounded)."""
        sx, sy = self.scale_xy
        return box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy

    def stored_box(self, box: Box) -> tuple[float, float, float, float]:
        """A box of `pixels` -> the region it shows in full pixels (edges times the scale; fractional when the
        scale is not a whole number)."""
        sx, sy = self.scale_xy
        return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def read_header(path: Path) -> tuple[tuple[int, int], int] | None:
    """((width, height) as stored, EXIF orientation 1..8) from the header, without decoding the pixels; None if
    Pillow cannot read it (the decoder then says what is wrong). A photo too large for Pillow even to open is
    a one-line UserError."""
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            return image.size, orientation if orientation in range(1, 9) else 1
    except Image.DecompressionBombError:
        raise UserError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP (its header); too large to "
                        "decode here, shrink it first") from None
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read is left to OpenCV, the decoder we use
        return None


def check_pixels(path: Path, size_wh: tuple[int, int], max_pixels: int) -> None:
    """A one-line UserError if an image of `size_wh` has more than `max_pixels` pixels."""
    if size_wh[0] * size_wh[1] > max_pixels:
        raise UserError(f"{path}: {size_wh[0]} x {size_wh[1]} pixels ({size_wh[0] * size_wh[1] / 1e6:.0f} MP), above "
                        f"the limit of {max_pixels / 1e6:g} MP (--max-pixels); shrink it or raise the limit")


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, C) image as stored -> as displayed for an EXIF orientation (1..8; PIL's `exif_transpose`)."""
    turned = {1: pixels, 2: pixels[:, ::-1], 3: pixels[::-1, ::-1], 4: pixels[::-1],
              5: pixels.transpose(1, 0, 2), 6: np.rot90(pixels, -1), 7: np.rot90(pixels, -1)[::-1],
              8: np.rot90(pixels, 1)}[orientation]
    return np.ascontiguousarray(turned)


def upright_photo(photo: Photo, orientation: int) -> Photo:
    """`photo` (stored frame) turned to its displayed frame: pixels, full size and scale follow the turn."""
    swap = orientation in SWAPS_SIDES
    size, scale = photo.size_wh, photo.scale_xy
    return Photo(orient(photo.pixels, orientation), size[::-1] if swap else size, scale[::-1] if swap else scale,
                 "displayed")


def read_photo(path: Path, upright: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode a photo, reduced when large; turned upright by its EXIF orientation with `upright`.

    The size comes from the header (Pillow) and is checked against `max_pixels` first. A JPEG whose longer side
    is 2,000 px or more is decoded by libjpeg at 1/2, 1/4 or 1/8 (`reduction_factor`), which gives
    ceil(W / f) x ceil(H / f) pixels, each covering f x f stored pixels exactly; other formats are decoded whole
    and shrunk with area averaging (scale W / w). Errors are `read_image_rgb`'s one-line UserErrors (empty,
    truncated, not an image). Annotated data sets read with upright=False (their points are in stored pixels).
    """
    header = read_header(path)  # no warnings.catch_warnings here: it is not thread-safe (quiet_header_reads)
    size, orientation = header or (None, 1)
    if size:
        check_pixels(path, size, max_pixels)
    photo = decode_photo(path, size)
    if photo.pixels.shape[0] * photo.pixels.shape[1] > max_pixels:  # a header Pillow could not read
        check_pixels(path, photo.size_wh, max_pixels)
    return upright_photo(photo, orientation) if upright else photo


def decode_photo(path: Path, size: tuple[int, int] | None) -> Photo:
    """The photo in its stored frame, reduced when its header `size` (None: unknown) is large."""
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


def frame_size_wh(path: Path, upright: bool = True) -> tuple[int, int] | None:
    """(width, height) of an image file in the frame `read_photo` gives (sides swapped for an EXIF turn by 90
    degrees when upright), from its header; None if Pillow cannot read the header."""
    header = read_header(path)
    if header is None:
        return None
    (width, height), orientation = header
    return (height, width) if upright and orientation in SWAPS_SIDES else (width, height)
