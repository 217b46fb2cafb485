"""Helpers shared by the test modules (conftest.py keeps the fixtures; no test module imports another).

The real-face sample data (`SHARED_DATA`) is the folder named by the environment variable
LANDMARKS_SHARED_DATA, by default `../shared/data` beside the repository; tests that need it skip when it
is absent (`shared`).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from utils.evaluation.detections import save_detections

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["--config", str(REPO / "configs" / "synthetic.yaml")]
# The top-level modules that are scripts (or the model and losses above utils/): every layering check uses this list
SCRIPTS = ("model", "train", "extract_data", "eval_regressor", "detect", "export_model", "import_reference", "losses")
SHARED_DATA = Path(os.environ.get("LANDMARKS_SHARED_DATA") or REPO.parent / "shared" / "data")
FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2), 128-px crop
CELEBA_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
                 "rightmouth_x rightmouth_y")


def shared(name: str) -> Path:
    """SHARED_DATA / name, or skip the test when that folder is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not present (set LANDMARKS_SHARED_DATA to the folder holding it)")
    return path


def tiny_train_overrides(root: Path, out_dir: Path, steps: int) -> list[str]:
    """configs/synthetic.yaml shrunk to seconds on a CPU: 32 px crops, narrow networks, batch 8."""
    return [f"data.root={root}", f"log.out_dir={out_dir}", f"train.max_steps={steps}", "train.batch_size=8",
            "data.image_size=32", "data.num_workers=0", "model.fan_features=16", "model.gen_conv_dim=8",
            "model.gen_res_blocks=1", "log.progress=false", "runtime.threads=1", "runtime.deterministic=true",
            "validation.num_fit=40", "validation.num_eval=20", "validation.batch_size=20"]


def assert_one_line_error(rc: int, capsys, *fragments: str) -> str:
    """The run failed with exit code 2 and one 'error: ' line on stderr holding every fragment."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def imported_modules(path: Path) -> set[str]:
    """Every module an `import x` or `from x import y` statement of the file names (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def tiny_run_args(root: Path, out: Path, steps: int, run_dir: Path, *extra: str) -> list[str]:
    """train.py's arguments for a tiny run (`tiny_train_overrides`) into run_dir, logging every step, no validation."""
    return CONFIG + tiny_train_overrides(root, out, steps) + [
        f"log.run_dir={run_dir}", "validation.enabled=false", "log.log_every=1", *extra]


def write_detections(path: Path, names: list[str], split: str, seed: int, preview: int = 0,
                     settings: dict | None = None) -> Path:
    """A detections file of len(names) faces: 4 detected points, a noisy linear function of the 5 annotated."""
    n = len(names)
    rng = np.random.default_rng(seed)
    annotated = FACE_XY_PX + rng.normal(scale=4.0, size=(n, 5, 2))
    mixing = np.random.default_rng(99).normal(size=(8, 10)) / 5
    detected = 64 + (annotated.reshape(n, 10) - 64) @ mixing.T + rng.normal(scale=0.3, size=(n, 8))
    images = rng.integers(0, 255, size=(preview, 64, 64, 3), dtype=np.uint8) if preview else None
    return save_detections(path, detected_xy_px=detected.reshape(n, 4, 2), annotated_xy_px=annotated, names=names,
                           split=split, checkpoint="runs/x/last.pt sha256:ab12", preview_images=images,
                           settings=settings or {"tight": 70, "image_size": 128, "bn_mode": "eval",
                                                 "checkpoint_sha256": "ab12" * 16})


def write_pair(folder: Path, n_train: int = 30, n_test: int = 10, preview: int = 0) -> tuple[Path, Path]:
    return (write_detections(folder / "mafl-train.npz", [f"train{i}.jpg" for i in range(n_train)], "mafl-train", 1),
            write_detections(folder / "mafl-test.npz", [f"test{i}.jpg" for i in range(n_test)], "mafl-test", 2,
                             preview=preview))


# --- tiny data sets in the original layouts ------------------------------------------------------------


def write_image(path: Path, width: int, height: int, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))


def celeba_points(index: int) -> list[int]:
    """Distinct integer points per image: x1 y1 ... x5 y5."""
    return [69 + index, 111, 108 + index, 112, 88, 136 + index, 72, 152, 105, 153 + index]


def make_celeba(root: Path, names=("000001.jpg", "000002.jpg", "031524.jpg", "000004.jpg"),
                train=("000002.jpg", "031524.jpg", "000004.jpg"), test=("000001.jpg",),
                image_dir="img_align_celeba") -> Path:
    """A CelebA + MAFL layout with 178x218 images and integer landmarks."""
    for name in names:
        write_image(root / "Img" / image_dir / name, 178, 218)
    rows = [f"{n} " + " ".join(f"{v:4d}" for v in celeba_points(i)) for i, n in enumerate(names)]
    (root / "Anno").mkdir(parents=True)
    (root / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        "\n".join([str(len(names)), CELEBA_HEADER + " "] + rows) + "\n")
    (root / "MAFL").mkdir()
    (root / "MAFL" / "training.txt").write_text("\n".join(train))
    (root / "MAFL" / "testing.txt").write_text("\n".join(test))
    return root


def make_aflw(root: Path, count: int = 3, keypoints=True) -> Path:
    """aflw_release-2 layout; gt[i] holds (y, x) = (50 + i + k, 20 + 10 k) for point k."""
    for part, number in (("train", count), ("test", 1)):
        names = [f"image{part}{i:02d}_1.jpg" for i in range(number)]
        for name in names:
            write_image(root / "output" / name, 150, 150)
        (root / f"aflw_{part}_images.txt").write_text("\n".join(names) + "\n")
        gt = np.array([[[50 + i + k, 20 + 10 * k] for k in range(5)] for i in range(number)],
                      np.float64)
        content = {"gt": gt, "hw": np.full((number, 2), 150.0)} if keypoints else {"hw": gt}
        scipy.io.savemat(str(root / f"aflw_{part}_keypoints.mat"), content)
    return root


def mtfl_line(path: str, index: int) -> str:
    xs = [30 + index % 7, 60, 45, 33, 58]
    ys = [40, 41, 55, 70, 71 + index % 5]
    return f"{path} " + " ".join(f"{v:.6f}" for v in xs + ys) + " 1 2 2 3"


def make_mtfl(root: Path, count: int = 20, with_test: bool = False) -> Path:
    """MTFL layout exactly as distributed: backslashes, CRLF, leading spaces, trailing ' ' line."""
    lines = []
    for i in range(count):
        folder = "lfw_5590" if i < count // 2 else "net_7876"
        write_image(root / folder / f"face_{i:03d}.jpg", 100, 100)
        lines.append(("" if i == 0 else " ") + mtfl_line(f"{folder}\\face_{i:03d}.jpg", i))
    (root / "training.txt").write_bytes(("\r\n".join(lines) + "\r\n ").encode())
    if with_test:
        write_image(root / "AFLW" / "t.jpg", 150, 150)
        (root / "testing.txt").write_bytes((" " + mtfl_line("AFLW\\t.jpg", 0) + "\r\n").encode())
    return root
