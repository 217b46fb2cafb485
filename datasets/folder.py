"""A plain folder of images without annotations.

Every file under `root` (recursively, following symlinked folders) whose suffix is in
`IMAGE_SUFFIXES` (any case), sorted by its posix path relative to `root` as seen under the root,
which is also its record name. Hidden files and folders (starting with '.') are ignored. A folder
reached a second time (a symlink loop such as `link -> ..`, or two links to one folder) is listed
only the first time, in sorted order, so no image is listed twice through folder links. An entry
with an image suffix that is not a readable file (a broken link) or a folder that cannot be listed
is refused, or skipped and counted with `skip_bad_images`. Records have `points_xy=None`; the crops
fall back to a fixed box (see `transforms.fixed_crop_box`). The images pass `records.check_faces`
(header read, too-small images).
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets.records import FaceRecord, check_faces, report_bad, require_dir, require_nonempty
from utils.dataset_registry import IMAGE_SUFFIXES


def find_image_names(root: Path) -> tuple[list[str], list[str]]:
    """(image names, names of bad entries) under `root`: posix paths relative to it, sorted.

    Bad entries are image-suffixed entries that are not files (broken links) and folders that cannot
    be listed (their name ends in '/').
    """
    names, bad = [], []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(folder: Path, prefix: str) -> None:
        try:
            stat = folder.stat()
            if (stat.st_dev, stat.st_ino) in seen_dirs:  # a symlink loop, or a folder linked twice
                return
            seen_dirs.add((stat.st_dev, stat.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            bad.append(prefix or "./")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                walk(Path(entry.path), name + "/")
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                (names if is_file else bad).append(name)

    walk(root, "")
    return sorted(names), sorted(bad)


def load_folder_records(root: Path, *, skip_bad_images: bool = False) -> list[FaceRecord]:
    """Records for every image under `root`, sorted by relative posix path."""
    require_dir(root, "a folder of .jpg/.jpeg/.png/.bmp images")
    names, bad = find_image_names(root)
    report_bad(bad, len(names) + len(bad), "are broken links or folders that cannot be read", root,
               skip_bad_images)
    records = [FaceRecord(name, root / name, None) for name in names]
    records = check_faces(records, skip_bad_images)
    require_nonempty(records, "folder", root)
    return records
