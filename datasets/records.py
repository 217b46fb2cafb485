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

The rules every loader applies when it loads a split (`check_faces` and the list readers), before
any image is decoded for training or extraction:

* Lists and annotation files are UTF-8 text with at least one name; a name listed twice in one
  list, annotated twice, or present in both the train and the test list of a data set is refused
  with the file and both line numbers (not skippable: it is a data error, not a bad image).
* Annotations must be finite numbers (no nan/inf), refused with file and line (AFLW: the face).
* Each image's size is read from its header (Pillow, without decoding). Points may lie outside the
  image by at most `POINT_TOLERANCE` of its width (x) or height (y); farther out, or all five points
  within `MIN_POINT_SPREAD_PX` of each other, the face is refused with the point and image size.
* An image whose header does not read is decoded (`read_image_rgb`) to name what is wrong with it
  (e.g. "empty file (0 bytes)"); if it does not decode it is refused.
* Images with a side below `MIN_IMAGE_SIDE` pixels are warned about once (`SmallImageWarning`, count
  and first file); they are trained on only if not skipping.

With `skip_bad_images` every refused face or image above is dropped instead, and each kind of
problem is reported by one `SkippedDataWarning` with its count and first example.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.landmarks import LANDMARK_NAMES, NUM_ANNOTATED, landmark_label

JPEG_START_OF_IMAGE = b"\xff\xd8"
JPEG_END_OF_IMAGE = b"\xff\xd9"
# A point may lie outside its image by at most this fraction of the image's width (x) or height (y).
# Real annotations lie inside (MTFL, CelebA aligned) or at most a little outside a tight crop (AFLW's
# output/ crops), while a misplaced or placeholder point (-1, 0, -500, a value in another image's
# pixels) lies far out and turns the landmark crop into a sliver of the image.
POINT_TOLERANCE = 0.25
# Five points within this many pixels of each other (in x and in y) are a placeholder, not a face: the
# landmark crop around them is a fixed 17-pixel square.
MIN_POINT_SPREAD_PX = 1.0
# Images with a side below this are warned about (and skipped with skip_bad_images): the crops are
# upscaled to 128 px, so such an image trains on a few blurred pixels.
MIN_IMAGE_SIDE = 16
# How each script spells the option that skips bad data (extract_data.py and detect.py, train.py).
SKIP_HINT = "--skip-bad-images, or data.skip_bad_images=true in train.py, skips them"


class SkippedDataWarning(UserWarning):
    """Records were dropped because `skip_bad_images=True`; the message gives the count."""


class SmallImageWarning(UserWarning):
    """Images smaller than `MIN_IMAGE_SIDE` are used; the message gives the count and the first."""


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face image and its annotation.

    name: the image's name as the split list writes it (posix separators), unique in a split.
    path: the image file.
    points_xy: (5, 2) float32, read-only, (x, y) in pixels of the stored image, in
        `LANDMARK_NAMES` order; None when the data set has no annotations.
    source: where the points were read, for messages: "<file>:<line>" for the text files,
        "<file> face <i>" (1-based) for an AFLW .mat; "" when unknown or unannotated.

    Records compare by identity (`eq=False`), because numpy arrays have no single truth value.
    """

    name: str
    path: Path
    points_xy: np.ndarray | None
    source: str = ""

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


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped); one-line `UserError` if it is
    missing, unreadable or not text. what: what the file should be, for the messages."""
    require_file(path, what)
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a text file (byte {error.start} is not UTF-8); expected {what}") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the file ({error.strerror}); expected {what}") from None


def plural(count: int, singular: str, plural_form: str) -> str:
    """'1 name is' / '3 names are' style counts."""
    return f"{count} {singular if count == 1 else plural_form}"


def refuse_repeats(path: Path, entries: Sequence[tuple[int, str]], verb: str = "listed",
                   fix: str = "delete the repeated lines") -> None:
    """Raise if a name occurs twice among `entries` [(line number, name)] of `path`.

    The message names the second occurrence's line, the first's, and how many names repeat, e.g.
    "MAFL/training.txt:17: 000123.jpg is listed twice (first at line 5); 3 names are listed more
    than once". A repeated face would be trained on or scored twice: not skippable.
    """
    first_line: dict[str, int] = {}
    repeats = []
    for number, name in entries:
        if name in first_line:
            repeats.append((number, name, first_line[name]))
        else:
            first_line[name] = number
    if repeats:
        number, name, first = repeats[0]
        count = len({name for _, name, _ in repeats})
        are = plural(count, "name is", "names are")
        raise UserError(f"{path}:{number}: {name} is {verb} twice (first at line {first}); {are} {verb} "
                        f"more than once; expected each image once: {fix}")


def refuse_overlap(test_path: Path, test_entries: Sequence[tuple[int, str]], train_path: Path,
                   train_entries: Sequence[tuple[int, str]]) -> None:
    """Raise if any name of the test list is also in the train list (both [(line number, name)])."""
    train_lines = {name: number for number, name in train_entries}
    shared = [(number, name) for number, name in test_entries if name in train_lines]
    if shared:
        number, name = shared[0]
        raise UserError(f"{test_path}:{number}: {plural(len(shared), 'name', 'names')} of {test_path} "
                        f"{'is' if len(shared) == 1 else 'are'} also in {train_path} (first: {name}, "
                        f"line {train_lines[name]} there): a test face must not be trained on; "
                        f"expected disjoint lists: remove them from one of the two")


def read_name_lines(path: Path) -> list[tuple[int, str]]:
    """[(line number, name)] of a one-name-per-line list (MAFL, AFLW), blank lines, CR and edge
    spaces ignored. Raises `UserError` if the list has no name or repeats one."""
    lines = read_text_lines(path, "a list of image names, one per line")
    entries = [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not entries:
        raise UserError(f"{path}: no image names (the file is empty or blank); expected one image name per line")
    refuse_repeats(path, entries)
    return entries


def read_name_list(path: Path) -> list[str]:
    """Names from a one-name-per-line list (MAFL, AFLW), see `read_name_lines`."""
    return [name for _, name in read_name_lines(path)]


def refuse_nonfinite_rows(path: Path, bad: Sequence[tuple[str, str]], total: int, unit: str = "rows") -> None:
    """Raise about annotation rows holding nan or inf: bad = [(where, what)], e.g.
    ("file:17", "000123.jpg has x1 = nan"), in file order; `total` rows (or faces: `unit`) were read."""
    if bad:
        place, what = bad[0]
        raise UserError(f"{place}: {what}; {len(bad)} of {total} {unit} of {path.name} hold a non-finite value; "
                        f"expected finite pixel coordinates: fix or delete those {unit} ({SKIP_HINT})")


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
        raise UserError(f"{message}; expected every listed image to be present ({SKIP_HINT})")
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
    if not data:  # the usual leftover of an interrupted copy; cv2.imdecode raises on it
        raise UserError(f"{path}: empty file (0 bytes); expected a whole jpg/png/bmp file (copy it again)")
    if data.startswith(JPEG_START_OF_IMAGE) and not jpeg_is_complete(data):
        raise UserError(f"{path}: truncated JPEG (no end-of-image marker after the image data); "
                        "expected a whole jpg/png/bmp file")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        image = None
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


def image_size_wh(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image file's header, read by Pillow without decoding the pixels;
    None if Pillow cannot read it (the caller then asks the decoder, which says what is wrong).

    The stored size, as `read_image_rgb` gives it: Pillow does not apply the EXIF orientation here.
    Call it inside `warnings.catch_warnings()` (Pillow warns about very large or odd files).
    """
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read is left to OpenCV, the decoder we use
        return None


def where(record: FaceRecord) -> str:
    """'<source>: <name>' for an annotated record, else its path."""
    return f"{record.source}: {record.name}" if record.source else str(record.path)


def first_outside_point(points_xy: np.ndarray, width: int, height: int) -> int:
    """Index of the first point farther outside the image than `POINT_TOLERANCE` allows, or -1."""
    size = np.array([width, height], np.float64)
    low, high = -0.5 - POINT_TOLERANCE * size, size - 0.5 + POINT_TOLERANCE * size
    outside = np.any((points_xy < low) | (points_xy > high), axis=1)
    return int(np.argmax(outside)) if outside.any() else -1


def face_problem(record: FaceRecord) -> tuple[str, str] | None:
    """(kind, first-example text) of the first rule of `check_faces` that `record` breaks, or None.

    Kinds: "nonfinite", "undecodable", "small" (a side below `MIN_IMAGE_SIDE`; such an image's points
    are not judged against so few pixels), "outside", "coincident".
    """
    points = record.points_xy
    if points is not None and not np.isfinite(points).all():
        k = int(np.argmax(~np.isfinite(points).all(axis=1)))
        return "nonfinite", (f"{where(record)}: point {k + 1} ({landmark_label(LANDMARK_NAMES[k])}) is "
                             f"({points[k, 0]:g}, {points[k, 1]:g})")
    size = image_size_wh(record.path)
    if size is None:
        try:
            image = read_image_rgb(record.path)
        except UserError as error:
            return "undecodable", str(error)
        size = (image.shape[1], image.shape[0])
    width, height = size
    if min(width, height) < MIN_IMAGE_SIDE:
        return "small", f"{record.path}, {width}x{height}"
    if points is None:
        return None
    k = first_outside_point(points, width, height)
    if k >= 0:
        return "outside", (f"{where(record)}: point {k + 1} ({landmark_label(LANDMARK_NAMES[k])}) at "
                           f"({points[k, 0]:g}, {points[k, 1]:g}) lies outside its {width}x{height} image "
                           f"{record.path} by more than {POINT_TOLERANCE:.0%} of its size")
    if (points.max(axis=0) - points.min(axis=0)).max() < MIN_POINT_SPREAD_PX:
        return "coincident", (f"{where(record)}: all five points lie within {MIN_POINT_SPREAD_PX:g} pixel of "
                              f"({points[0, 0]:g}, {points[0, 1]:g}), a placeholder rather than a face")
    return None


# check_faces' refusals, in the order they are raised: kind -> (what the count is of, the same when
# skipping, what was expected; read_image_rgb's message already says what it expected).
FACE_REFUSALS = {
    "nonfinite": ("faces have non-finite points", "faces have non-finite points",
                  "expected finite pixel coordinates: fix or delete those rows"),
    "undecodable": ("images do not decode", "images do not decode", ""),
    "outside": ("faces have points that far out", "faces have points outside their image",
                "expected (x, y) pixels of the stored image: fix or delete those rows"),
    "coincident": ("faces have all their points at one place", "faces have all their points at one place",
                   "expected five distinct points: fix or delete those rows"),
}


def check_faces(records: Sequence[FaceRecord], skip_bad_images: bool) -> list[FaceRecord]:
    """The records of one split that pass the face and image rules of the module docstring.

    Reads every image's header (about 40 us each; docs/workflow.md, "Bad data: what is refused, what
    is skipped") and decodes only the images whose header does not read. Without `skip_bad_images`
    the first kind of problem found raises one `UserError` with its first example and count, in the
    order of `FACE_REFUSALS`; images smaller than `MIN_IMAGE_SIDE` are then warned about once
    (`SmallImageWarning`) and kept. With `skip_bad_images` every such record is dropped and each kind
    reported by one `SkippedDataWarning` (count, first example).
    """
    total = len(records)
    found: dict[str, list[str]] = {kind: [] for kind in (*FACE_REFUSALS, "small")}
    good = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning and the like: not our reader
        for record in records:
            problem = face_problem(record)
            if problem is not None:
                found[problem[0]].append(problem[1])
            if problem is None or (problem[0] == "small" and not skip_bad_images):
                good.append(record)
    for kind, (problem, _, expected) in FACE_REFUSALS.items():
        if found[kind] and not skip_bad_images:
            raise UserError(f"{found[kind][0]}; {len(found[kind])} of {total} {problem}"
                            + (f"; {expected}" if expected else "") + f" ({SKIP_HINT})")
    for kind, (_, problem, _) in FACE_REFUSALS.items():
        if found[kind]:
            warnings.warn(f"skipping bad data: {len(found[kind])} of {total} {problem} (first: {found[kind][0]})",
                          SkippedDataWarning, stacklevel=3)
    if found["small"]:
        smaller = f"{len(found['small'])} of {total} images are smaller than {MIN_IMAGE_SIDE} pixels on a side"
        if skip_bad_images:
            warnings.warn(f"skipping bad data: {smaller} (first: {found['small'][0]})", SkippedDataWarning,
                          stacklevel=3)
        else:
            warnings.warn(f"{smaller} (first: {found['small'][0]}): their crops are upscaled from a few pixels "
                          f"({SKIP_HINT})", SmallImageWarning, stacklevel=3)
    return good
