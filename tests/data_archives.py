"""Small zip archives in the layouts of the real downloads, built from the synthetic face set.

`celeba.zip` holds `celeba/` (the synthetic set as it is: CelebA + MAFL layout), `aflw_release-2.zip`
holds `aflw_release-2/` (its faces as output/*.jpg, lists, and .mat keypoints in (y, x) order) and
`MTFL.zip` holds training.txt at the top (Windows paths, CRLF, leading spaces) and lfw_5590/.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import scipy.io

from datasets.celeba import LANDMARK_FILE, read_celeba_landmarks


def zip_tree(files: dict[str, Path | bytes], path: Path) -> Path:
    """Write a zip whose member `name` holds the file (Path) or bytes given for it."""
    with zipfile.ZipFile(path, "w") as z:
        for name, content in files.items():
            if isinstance(content, Path):
                z.write(content, name)
            else:
                z.writestr(name, content)
    return path


def celeba_zip(synthetic_root: Path, path: Path) -> Path:
    files = {f"celeba/{p.relative_to(synthetic_root).as_posix()}": p
             for p in sorted(synthetic_root.rglob("*")) if p.is_file()}
    return zip_tree(files, path)


def aflw_zip(synthetic_root: Path, path: Path, num_train: int = 80) -> Path:
    points = read_celeba_landmarks(synthetic_root / LANDMARK_FILE)  # name -> (5, 2) (x, y)
    names = sorted(points)
    files: dict[str, Path | bytes] = {}
    for part, chosen in (("train", names[:num_train]), ("test", names[num_train:])):
        files[f"aflw_release-2/aflw_{part}_images.txt"] = "\n".join(chosen).encode()
        gt_yx = np.stack([points[n][:, ::-1] for n in chosen])  # (N, 5, 2) (y, x)
        mat = path.parent / f"aflw_{part}_keypoints.mat"
        scipy.io.savemat(str(mat), {"gt": gt_yx, "hw": np.full((len(chosen), 2), (218, 178))})
        files[f"aflw_release-2/{mat.name}"] = mat
    for name in names:
        files[f"aflw_release-2/output/{name}"] = synthetic_root / "Img" / "img_align_celeba" / name
    return zip_tree(files, path)


def mtfl_zip(synthetic_root: Path, path: Path) -> Path:
    points = read_celeba_landmarks(synthetic_root / LANDMARK_FILE)
    rows, files = [], {}
    for name, xy in sorted(points.items()):
        values = " ".join(f"{v:.2f}" for v in (*xy[:, 0], *xy[:, 1]))
        rows.append(f"lfw_5590\\{name} {values} 1 2 2 3")
        files[f"lfw_5590/{name}"] = synthetic_root / "Img" / "img_align_celeba" / name
    files["training.txt"] = ("\r\n ".join(rows) + "\r\n ").encode()
    return zip_tree(files, path)


def all_archives(synthetic_root: Path, folder: Path) -> dict[str, Path]:
    """{"celeba": zip, "aflw": zip, "mtfl": zip} under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"celeba": celeba_zip(synthetic_root, folder / "celeba.zip"),
            "aflw": aflw_zip(synthetic_root, folder / "aflw_release-2.zip"),
            "mtfl": mtfl_zip(synthetic_root, folder / "MTFL.zip")}


def url_args(archives: dict[str, Path]) -> list[str]:
    """`--url NAME=file://...` arguments for get_data."""
    return [arg for name, path in archives.items() for arg in ("--url", f"{name}={path.as_uri()}")]
