"""Face records and the small checks every loader shares.

A `FaceRecord` is one image on disk plus its five annotated points, if any. Points are always
(x, y) in pixels of the stored image, with pixel centres at integer coordinates (the pixel in
column 0 spans x in [-0.5, 0.5)). The order is the CelebA/MAFL/AFLW/MTFL order of
`utils.landmarks.LANDMARK_NAMES`.

Everything a user can get wrong here (a missing root, file, image, an empty split, an image that
does not decode) raises `UserError` with one line naming the file and what was expected. When the
caller asks to skip bad data (`skip_bad_images=True`) the records are dropped, counted, and
reported once with a `SkippedDataWarning` that gives the count and the first example, so data is
never silently shorter than its list.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED

JPEG_START_OF_IMAGE = b"\xff\xd8"
JPEG_END_OF_IMAGE = b"\xff\xd9"


class SkippedDataWarning(UserWarning):
    """Records were dropped because `skip_bad_images=True`; the message gives the count."""


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face image and its annotation.

    name: the image's name as the split list writes it (posix separators), unique in a split.
    path: the image file.
    points_xy: (5, 2) float32, read-only, (x, y) in pixels of the stored image, in
        `LANDMARK_NAMES` order; None when the data set has no annotations.

    Records compare by identity (`eq=False`), because numpy arrays have no single truth value.
    """

    name: str
    path: Path
    points_xy: np.ndarray | None

    def __post_init__(self) -> None:
        if self.points_xy is not None:
            points = np.array(self.points_xy, dtype=np.float32).reshape(NUM_ANNOTATED, 2)
            points.setflags(write=False)
            object.__setattr__(self, "points_xy", points)


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a directory, else raise a one-line `UserError` naming `what`."""
    if not path.is_dir():
        raise UserError(f"{path}: directory not found; expected {what}")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return `path` if it is a file, else raise a one-line `UserError` saying what it should be."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected {what}")
    return path


def read_name_list(path: Path) -> list[str]:
    """Names from a one-name-per-line list (MAFL, AFLW); blank lines, CR and edge spaces ignored."""
    text = require_file(path, "a list of image names, one per line").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def require_nonempty(records: Sequence[FaceRecord], split: str, source: Path) -> None:
    """Raise a one-line `UserError` if a split ends up with no records."""
    if not records:
        raise UserError(f"{source}: split '{split}' has no usable images; expected at least one")


def existing_files(paths: Iterable[Path]) -> set[Path]:
    """The subset of `paths` that exist as files, listing each parent directory only once.

    One `os.scandir` per directory is much faster than a `stat` per file for CelebA's 202,599
    images in one folder.
    """
    by_parent: dict[Path, set[str]] = {}
    found = set()
    for path in paths:
        if path.parent not in by_parent:
            try:
                with os.scandir(path.parent) as entries:
                    by_parent[path.parent] = {e.name for e in entries if e.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                by_parent[path.parent] = set()
        if path.name in by_parent[path.parent]:
            found.add(path)
    return found


def report_bad(bad_names: Sequence[str], total: int, problem: str, source: Path,
               skip_bad_images: bool) -> None:
    """Raise (or, when skipping, warn once) about `bad_names` out of `total` listed in `source`.

    problem: what is wrong with them, e.g. "have no image in /data/Img/img_align_celeba".
    """
    if not bad_names:
        return
    message = (f"{source}: {len(bad_names)} of {total} names {problem} "
               f"(first: {bad_names[0]})")
    if not skip_bad_images:
        raise UserError(f"{message}; expected every listed image to be present "
                        f"(set skip_bad_images to skip them)")
    warnings.warn(f"skipping {message}", SkippedDataWarning, stacklevel=3)


def drop_missing_images(records: Sequence[FaceRecord], source: Path,
                        skip_bad_images: bool) -> list[FaceRecord]:
    """Records whose image file exists; missing ones raise, or are skipped with one warning.

    source: the list file the names came from, named in the message.
    """
    present = existing_files(r.path for r in records)
    missing = [r for r in records if r.path not in present]
    where = os.path.commonpath([str(r.path.parent) for r in missing]) if missing else ""
    report_bad([r.name for r in missing], len(records), f"have no image under {where}",
               source, skip_bad_images)
    return [r for r in records if r.path in present]


def jpeg_is_complete(data: bytes) -> bool:
    """Whether JPEG bytes (starting with FF D8) hold an end-of-image marker (FF D9) after their scan.

    Walks the header segments by their lengths up to the main image's first start-of-scan (FF DA),
    so that an EXIF thumbnail's own FF D9 (inside an APP1 segment) is not taken for the image's,
    then looks for FF D9 after it. Entropy-coded data never holds FF D9 (an FF there is followed by
    00 or a restart marker), so a file cut anywhere has none. Bytes after FF D9 are allowed.
    libjpeg decodes such a cut file with its missing rows grey and only a warning on stderr
    ("Premature end of JPEG file") that names no file.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
        elif marker == 0xD9:  # end of image before any scan
            return False
        elif marker == 0xDA:
            return data.find(JPEG_END_OF_IMAGE, pos + 2) >= 0
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False


def read_image_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB, ignoring EXIF orientation.

    Annotations are in stored-pixel coordinates, so the EXIF rotation flag must not be applied.
    Grey images are expanded to three channels. Raises `UserError` naming the file if it cannot be
    read, does not decode, or is a truncated JPEG (which OpenCV would decode with grey rows). The
    pixels are OpenCV's (`cv2.imread`'s) for every file that is whole.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the image ({exc.strerror}); expected a readable "
                        "jpg/png/bmp file") from None
    if data.startswith(JPEG_START_OF_IMAGE) and not jpeg_is_complete(data):
        raise UserError(f"{path}: truncated JPEG (no end-of-image marker after the image data); "
                        "expected a whole jpg/png/bmp file")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise UserError(f"{path}: image does not decode; expected a readable jpg/png/bmp file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def drop_undecodable(records: Sequence[FaceRecord], source: str) -> list[FaceRecord]:
    """Records whose image decodes; the others are skipped with one warning (count, first name).

    Decodes every image (about 0.5 ms each for a 250x250 jpg), so it is only used where asked for.
    """
    good, bad = [], []
    for record in records:
        try:
            read_image_rgb(record.path)
            good.append(record)
        except UserError:
            bad.append(record)
    if bad:
        warnings.warn(f"skipping {source}: {len(bad)} of {len(records)} images do not decode "
                      f"(first: {bad[0].path})", SkippedDataWarning, stacklevel=2)
    return good
