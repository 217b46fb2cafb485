"""CelebA and MAFL, read from the VGG `celeba.zip` layout (docs/reference.md, "Data").

Layout under `root`::

    Img/img_align_celeba_hq/NNNNNN.jpg    used if this folder exists, else
    Img/img_align_celeba/NNNNNN.jpg       178x218 aligned faces
    Anno/list_landmarks_align_celeba.txt  line 1 count, line 2 header, then `name x1 y1 ... x5 y5`
    MAFL/training.txt, MAFL/testing.txt   one name per line (19,000 / 1,000 names)

Points are the file's integers used directly as (x, y) pixel-centre coordinates, as the reference
does. Splits:

* `celeba`: every name of the landmark file minus the MAFL test names, sorted (201,599 images).
  MAFL train images are included, as in the reference.
* `mafl-train`: MAFL/training.txt in file order, minus the reference's three files (see
  `REFERENCE_EXCLUDED_MAFL_TRAIN`) unless `exclude_reference_three=False`.
* `mafl-test`: MAFL/testing.txt in file order.

Every split also checks the lists and the landmark file as a whole (see `datasets.records`): a name
listed twice in a MAFL list, in both MAFL lists (training.txt is read when present), or annotated
twice, or a row holding nan/inf is refused with file and line numbers; then the split's faces pass
`records.check_faces`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from datasets.records import (FaceRecord, check_faces, drop_missing_images, read_name_lines, read_text_lines,
                              refuse_nonfinite_rows, refuse_overlap, refuse_repeats, report_bad, require_dir,
                              require_nonempty)
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED

LANDMARK_FILE = Path("Anno") / "list_landmarks_align_celeba.txt"
MAFL_TRAIN_FILE = Path("MAFL") / "training.txt"
MAFL_TEST_FILE = Path("MAFL") / "testing.txt"
LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                   "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
# The reference drops these three MAFL train files with the comment "notfound" and no other
# explanation (docs/reference.md); they are present in CelebA and used for its training set. Kept by
# default for faithfulness (18,997 MAFL train images); `exclude_reference_three=False` keeps them.
REFERENCE_EXCLUDED_MAFL_TRAIN = ("031524.jpg", "179577.jpg", "139803.jpg")


def celeba_image_dir(root: Path) -> Path:
    """`Img/img_align_celeba_hq` if it exists, else `Img/img_align_celeba` (must exist)."""
    hq = root / "Img" / "img_align_celeba_hq"
    if hq.is_dir():
        return hq
    return require_dir(root / "Img" / "img_align_celeba",
                       "the CelebA aligned images (Img/img_align_celeba or "
                       "Img/img_align_celeba_hq)")


def read_celeba_rows(path: Path, *, allow_nonfinite: bool = False) -> dict[str, tuple[int, np.ndarray]]:
    """Parse the CelebA landmark file into {name: (line number, (5, 2) float32 (x, y) pixels)}, in file order.

    Checks, each raising `UserError` naming the file and line: the header; that every row has a name
    and 10 numbers; that no name has two rows (both lines named); the count line against the number of
    rows; and, unless `allow_nonfinite` (then `check_faces` skips those faces of a split), that every
    number is finite.
    """
    lines = read_text_lines(path, "the CelebA landmark file (Anno/list_landmarks_align_celeba.txt)")
    if len(lines) < 2:
        raise UserError(f"{path}:1: file too short; expected a count line and a header line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise UserError(f"{path}:1: expected the number of rows, got {lines[0][:40]!r}") from None
    if " ".join(lines[1].split()) != LANDMARK_HEADER:
        raise UserError(f"{path}:2: expected the header '{LANDMARK_HEADER}', got {lines[1][:60]!r}")
    rows, entries, nonfinite = {}, [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 + 2 * NUM_ANNOTATED:
            raise UserError(f"{path}:{number}: expected 11 fields (name x1 y1 ... x5 y5), "
                            f"got {len(fields)}")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise UserError(f"{path}:{number}: expected 10 numbers after the name, "
                            f"got {' '.join(fields[1:])!r}") from None
        bad = [j for j, value in enumerate(values) if not math.isfinite(value)]
        if bad:
            column = f"{'xy'[bad[0] % 2]}{bad[0] // 2 + 1}"
            nonfinite.append((f"{path}:{number}", f"{fields[0]} has {column} = {fields[1 + bad[0]]}"))
        entries.append((number, fields[0]))
        rows.setdefault(fields[0], (number, np.array(values, dtype=np.float32).reshape(NUM_ANNOTATED, 2)))
    refuse_repeats(path, entries, verb="annotated", fix="delete the repeated rows")
    if len(rows) != count:
        cause = "a truncated file?" if len(rows) < count else "rows added after the count was written?"
        raise UserError(f"{path}:1: the count line says {count} rows but the file has {len(rows)} ({cause}); "
                        f"expected them to agree")
    if not allow_nonfinite:
        refuse_nonfinite_rows(path, nonfinite, len(rows))
    return rows


def read_celeba_landmarks(path: Path) -> dict[str, np.ndarray]:
    """{name: (5, 2) float32 (x, y) pixels} of the CelebA landmark file, in file order; see `read_celeba_rows`."""
    return {name: points for name, (_, points) in read_celeba_rows(path).items()}


def split_names(root: Path, split: str, landmarks: dict, exclude_reference_three: bool) -> tuple[list[str], Path]:
    """The names of `split` and the file they come from (see the module docstring for the rules).

    Reads MAFL/testing.txt and, when present (required for mafl-train), MAFL/training.txt, and refuses
    a name repeated in either or present in both.
    """
    test_path, train_path = root / MAFL_TEST_FILE, root / MAFL_TRAIN_FILE
    test_entries = read_name_lines(test_path)
    train_entries = read_name_lines(train_path) if split == "mafl-train" or train_path.exists() else None
    if train_entries is not None:
        refuse_overlap(test_path, test_entries, train_path, train_entries)
    if split == "mafl-test":
        return [name for _, name in test_entries], test_path
    if split == "mafl-train":
        names = [name for _, name in train_entries]
        if exclude_reference_three:
            names = [n for n in names if n not in REFERENCE_EXCLUDED_MAFL_TRAIN]
        return names, train_path
    if split == "celeba":
        excluded = {name for _, name in test_entries}
        return sorted(n for n in landmarks if n not in excluded), root / LANDMARK_FILE
    raise ValueError(f"not a CelebA split: {split}")


def load_celeba_records(root: Path, split: str, *, exclude_reference_three: bool = True,
                        skip_bad_images: bool = False) -> list[FaceRecord]:
    """Records of a CelebA/MAFL split (`utils.dataset_registry.LAYOUT_SPLITS['celeba']`), points in aligned-image pixels.

    Listed names with no landmark row or no image, and faces that fail `records.check_faces`, raise
    `UserError` with the count and the first name; with `skip_bad_images` they are dropped and
    reported by one `SkippedDataWarning` each. Record sources are "<landmark file>:<line>".
    """
    require_dir(root, "the CelebA root holding Anno/, Img/ and MAFL/")
    image_dir = celeba_image_dir(root)
    landmark_path = root / LANDMARK_FILE
    landmarks = read_celeba_rows(landmark_path, allow_nonfinite=skip_bad_images)
    names, source = split_names(root, split, landmarks, exclude_reference_three)
    unannotated = [n for n in names if n not in landmarks]
    report_bad(unannotated, len(names), f"have no row in {landmark_path}", source, skip_bad_images)
    records = [FaceRecord(n, image_dir / n, landmarks[n][1], f"{landmark_path}:{landmarks[n][0]}")
               for n in names if n in landmarks]
    records = drop_missing_images(records, source, skip_bad_images)
    records = check_faces(records, skip_bad_images)
    require_nonempty(records, split, source)
    return records
