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
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from datasets.records import (FaceRecord, drop_missing_images, require_dir,
                              require_file, require_nonempty)
from utils.errors import UserError
from utils.landmarks import NUM_ANNOTATED

MTFL_FIELDS = 1 + 2 * NUM_ANNOTATED + 4
VALIDATION_SEED = 0


def read_mtfl_annotations(path: Path) -> list[tuple[str, np.ndarray]]:
    """Parse an MTFL list into [(posix name, (5, 2) float32 (x, y) pixels)], in file order.

    Attribute columns are checked for presence but not returned. Blank lines are skipped (the
    distributed training.txt ends with a line holding one space).
    """
    require_file(path, "an MTFL annotation list (training.txt or testing.txt)")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
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
        points_xy = np.stack([values[:NUM_ANNOTATED], values[NUM_ANNOTATED:]], axis=1)  # (5, 2)
        entries.append((fields[0].replace("\\", "/"), points_xy))
    return entries


def validation_indices(names: list[str], seed: int = VALIDATION_SEED) -> set[int]:
    """Indices of the n // 10 validation faces: the first of a hash-seeded permutation of names."""
    order = sorted(range(len(names)),
                   key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).digest())
    return set(order[:len(names) // 10])


def load_mtfl_records(root: Path, split: str, *, skip_bad_images: bool = False) -> list[FaceRecord]:
    """Records of an MTFL split (`utils.dataset_registry.LAYOUT_SPLITS['mtfl']`), points (x, y) in stored-image pixels."""
    require_dir(root, "the MTFL root holding training.txt and the image folders")
    list_path = root / ("testing.txt" if split == "mtfl-test" else "training.txt")
    entries = read_mtfl_annotations(list_path)
    if split != "mtfl-test":
        val = validation_indices([name for name, _ in entries])
        keep_val = split == "mtfl-val"
        entries = [e for i, e in enumerate(entries) if (i in val) == keep_val]
    records = [FaceRecord(name, root / name, pts) for name, pts in entries]
    records = drop_missing_images(records, list_path, skip_bad_images)
    require_nonempty(records, split, list_path)
    return records
