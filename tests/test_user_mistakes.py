"""Plausible user mistakes, each run through a script's real `main()`: one line on stderr naming the file,
key or value, a non-zero exit, no traceback, and no output folder left half-made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import detect
import eval_regressor
import extract_data
import train
from conftest import tiny_train_overrides

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["--config", str(REPO / "configs" / "synthetic.yaml")]


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


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A tiny model trained for 2 steps (32 px crops, K=10)."""
    out = tmp_path_factory.mktemp("mistakes_run")
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, out, 2) + ["validation.enabled=false"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir / "last.pt"


@pytest.fixture
def photos(synthetic_root, tmp_path) -> Path:
    """A folder of four face images, 000003.jpg cut in half."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"):
        shutil.copy(synthetic_root / "Img" / "img_align_celeba" / name, folder)
    cut_in_half(folder / "000003.jpg")
    return folder


@pytest.fixture
def broken_celeba(synthetic_root, tmp_path) -> Path:
    """A copy of the synthetic set with one training image cut in half."""
    root = tmp_path / "celeba"
    shutil.copytree(synthetic_root, root)
    cut_in_half(root / "Img" / "img_align_celeba" / "000005.jpg")
    return root


# --- bad images --------------------------------------------------------------------------------


def test_a_truncated_jpeg_read_in_a_loader_worker_stops_extraction_with_its_own_line(checkpoint, photos, tmp_path,
                                                                                    capsys):
    out = tmp_path / "det"
    rc = extract_data.main(["--checkpoint", str(checkpoint), "--data-root", str(photos), "--splits", "folder",
                            "--out", str(out), "--workers", "1", "--quiet"])
    assert_one_line_error(rc, capsys, "000003.jpg: truncated JPEG")
    assert not out.exists()


def test_a_truncated_jpeg_read_in_a_loader_worker_stops_training_with_its_own_line(broken_celeba, tmp_path, capsys):
    argv = CONFIG + tiny_train_overrides(broken_celeba, tmp_path / "runs", 3) + [
        "data.num_workers=1", "validation.enabled=false", "train.batch_size=108"]  # one batch: every image
    assert_one_line_error(train.main(argv), capsys, "000005.jpg: truncated JPEG")
