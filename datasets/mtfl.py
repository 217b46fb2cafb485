"""MTFL (Zhang et al., ECCV 2014), read from its distributed layout.

Layout under `root`::

    training.txt     10,000 faces: lfw_5590\\<name>.jpg, net_7876\\<name>.jpg
    testing.txt      2,995 faces: AFLW\\<name>.jpg (may be absent)
    lfw_5590/, net_7876/, AFLW/

Each line: an image path with Windows backslashes, x1..x5, y1..y5, then gender, smile, glasses,
head pose (15 fields). Lines end in CRLF and may start with spaces. Points: left eye, right eye,
nose, left mouth corner, right mouth corner, in stored-image pixels.

Splits:

* `mtfl-train`: 90 % of training.txt, in file order.
* `mtfl-val`: the other 10 % (n // 10 faces), in file order. training.txt lists all lfw faces
  before all net faces, so the tail would be a biased sample; instead the validation faces are
  the first n // 10 of a fixed permutation, ordered by SHA-256 of "0:<name>" (seed 0). A hash
  order does not depend on the NumPy version or on the file's line order.
* `mtfl-test`: testing.txt (the AFLW part).

Checks (see `datasets.records`): every field of a line is a number after the path, a path listed
twice in one file or in both files (when both are present) is refused with its line numbers, and a
nan/inf point with file and line; then the split's faces pass `records.check_faces`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from datasets.records import (FaceRecord, check_faces, drop_missing_images, read_text_lines, refuse_nonfinite_rows,
                              refuse_overlap, refuse_repeats, require_dir, require_nonempty)
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED

MTFL_FIELDS = 1 + 2 * NUM_ANNOTATED + 4
VALIDATION_SEED = 0


def read_mtfl_annotations(path: Path, *, allow_nonfinite: bool = False) -> list[tuple[int, str, np.ndarray]]:
    """Parse an MTFL list into [(line number, posix name, (5, 2) float32 (x, y) pixels)], in file order.

    Attribute columns are checked to be numbers but not returned. Blank lines are skipped (the
    distributed training.txt ends with a line holding one space). Raises `UserError` naming the file
    and line for a malformed line, a path listed twice, a file without any line, and (unless
    `allow_nonfinite`; then `check_faces` skips those faces of a split) a nan or inf point.
    """
    lines = read_text_lines(path, "an MTFL annotation list (training.txt or testing.txt)")
    entries, nonfinite = [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != MTFL_FIELDS:
            raise UserError(f"{path}:{number}: expected {MTFL_FIELDS} fields (path x1..x5 y1..y5 "
                            f"gender smile glasses pose), got {len(fields)}")
        try:
            values = np.array([float(v) for v in fields[1:1 + 2 * NUM_ANNOTATED]], dtype=np.float32)
        except ValueError:
            raise UserError(f"{path}:{number}: expected 10 numbers after the path, "
                            f"got {' '.join(fields[1:11])!r}") from None
        try:
            np.array(fields[1 + 2 * NUM_ANNOTATED:], dtype=np.float64)  # the attributes, only checked
        except ValueError:
            raise UserError(f"{path}:{number}: expected 4 numbers (gender smile glasses pose) after the points, "
                            f"got {' '.join(fields[11:])!r}") from None
        bad = [j for j, value in enumerate(values) if not math.isfinite(value)]
        if bad:
            column = f"{'xy'[bad[0] // NUM_ANNOTATED]}{bad[0] % NUM_ANNOTATED + 1}"
            nonfinite.append((f"{path}:{number}", f"{fields[0]} has {column} = {fields[1 + bad[0]]}"))
        points_xy = np.stack([values[:NUM_ANNOTATED], values[NUM_ANNOTATED:]], axis=1)  # (5, 2)
        entries.append((number, fields[0].replace("\\", "/"), points_xy))
    if not entries:
        raise UserError(f"{path}: no annotation lines (the file is empty or blank); expected one line per face: "
                        f"path x1..x5 y1..y5 gender smile glasses pose")
    refuse_repeats(path, [(number, name) for number, name, _ in entries])
    if not allow_nonfinite:
        refuse_nonfinite_rows(path, nonfinite, len(entries))
    return entries


def read_mtfl_paths(path: Path) -> list[tuple[int, str]]:
    """[(line number, posix path)] of the first field of each line of an MTFL list (lenient)."""
    lines = read_text_lines(path, "an MTFL annotation list (training.txt or testing.txt)")
    return [(number, line.split()[0].replace("\\", "/")) for number, line in enumerate(lines, start=1)
            if line.split()]


def validation_indices(names: list[str], seed: int = VALIDATION_SEED) -> set[int]:
    """Indices of the n // 10 validation faces: the first of a hash-seeded permutation of names."""
    order = sorted(range(len(names)),
                   key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).digest())
    return set(order[:len(names) // 10])


def load_mtfl_records(root: Path, split: str, *, skip_bad_images: bool = False) -> list[FaceRecord]:
    """Records of an MTFL split (`utils.dataset_registry.LAYOUT_SPLITS['mtfl']`), points (x, y) in stored-image pixels.

    Record sources are "<list>:<line>". When both training.txt and testing.txt are present, a path
    in both is refused whichever split is loaded.
    """
    require_dir(root, "the MTFL root holding training.txt and the image folders")
    train_path, test_path = root / "training.txt", root / "testing.txt"
    list_path = test_path if split == "mtfl-test" else train_path
    entries = read_mtfl_annotations(list_path, allow_nonfinite=skip_bad_images)
    other_path = train_path if split == "mtfl-test" else test_path
    if other_path.exists():
        own = [(number, name) for number, name, _ in entries]
        other = read_mtfl_paths(other_path)
        if split == "mtfl-test":
            refuse_overlap(test_path, own, train_path, other)
        else:
            refuse_overlap(test_path, other, train_path, own)
    if split != "mtfl-test":
        val = validation_indices([name for _, name, _ in entries])
        keep_val = split == "mtfl-val"
        entries = [e for i, e in enumerate(entries) if (i in val) == keep_val]
    records = [FaceRecord(name, root / name, pts, f"{list_path}:{number}") for number, name, pts in entries]
    records = drop_missing_images(records, list_path, skip_bad_images)
    records = check_faces(records, skip_bad_images)
    require_nonempty(records, split, list_path)
    return records
