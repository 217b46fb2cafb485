"""A plain folder of images without annotations.

Every file under `root` (recursively) whose suffix is in `IMAGE_SUFFIXES` (any case), sorted by
its posix path relative to `root`, which is also its record name. Hidden files and folders
(starting with '.') are ignored. Records have `points_xy=None`; the crops fall back to a fixed box
(see `transforms.fixed_crop_box`).
"""

from __future__ import annotations

from pathlib import Path

from datasets.records import FaceRecord, require_dir, require_nonempty
from utils.dataset_registry import IMAGE_SUFFIXES


def load_folder_records(root: Path) -> list[FaceRecord]:
    """Records for every image under `root`, sorted by relative posix path."""
    require_dir(root, "a folder of .jpg/.jpeg/.png/.bmp images")
    names = sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts))
    records = [FaceRecord(name, root / name, None) for name in names]
    require_nonempty(records, "folder", root)
    return records
