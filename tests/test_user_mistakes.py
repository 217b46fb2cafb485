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
from helpers import CONFIG, assert_one_line_error, tiny_train_overrides
from utils.evaluation.detections import load_detections


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    """conftest's tiny model (32 px crops, K=10, 2 steps)."""
    return tiny_run / "last.pt"


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


@pytest.mark.slow
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


# --- bad values, before anything is written ----------------------------------------------------


@pytest.mark.parametrize("override, fragment", [
    ("runtime.device=gpu", "runtime.device 'gpu': expected auto, cpu, cuda, cuda:N or mps"),
    ("runtime.device=cuda:7" if torch.cuda.is_available() else "runtime.device=cuda",
     "runtime.device 'cuda" + (":7': this machine has" if torch.cuda.is_available() else "': CUDA is not available")),
    ("model.num_points=-3", "config key 'model.num_points': expected >= 1, got -3"),
    ("train.lr_fan=-1", "config key 'train.lr_fan': expected > 0, got -1.0"),
    ("loss.perceptual.enabled=true loss.perceptual.weights=/nowhere/vgg16.pth", "/nowhere/vgg16.pth"),
])
def test_bad_training_values_stop_with_one_line_and_no_run_folder(synthetic_root, tmp_path, capsys, override, fragment):
    out = tmp_path / "runs"
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, out, 2) + override.split())
    assert_one_line_error(rc, capsys, fragment)
    assert not out.exists()


def test_tensorboard_missing_is_found_before_the_run_folder_is_made(synthetic_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)  # as if not installed
    run_dir = tmp_path / "run"
    rc = train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 2) + [
        "log.tensorboard=true", f"log.run_dir={run_dir}"])
    assert_one_line_error(rc, capsys, "log.tensorboard=true needs the tensorboard package: pip install tensorboard")
    assert not run_dir.exists()


def test_a_run_folder_left_without_a_checkpoint_can_be_used_again(synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("from a start that failed\n")
    (run_dir / "log.jsonl").write_text('{"step": 1, "event": "from a start that failed"}\n')
    assert_one_line_error(train.main(["--resume", str(run_dir)]), capsys, "stopped before its first checkpoint",
                          f"start it again with --config FILE log.run_dir={run_dir}")
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 2) + [
        f"log.run_dir={run_dir}", "validation.enabled=false", "log.log_every=1"]) == 0
    log = (run_dir / "log.jsonl").read_text()
    assert "failed" not in log and (run_dir / "last.pt").exists()


def test_resume_refuses_an_override_that_changes_the_model(checkpoint, capsys):
    rc = train.main(["--resume", str(checkpoint.parent), "model.num_points=5"])
    assert_one_line_error(rc, capsys, "model.num_points=5: ", "was trained with model.num_points=10")


def test_resume_refuses_a_config_file(checkpoint, capsys):
    rc = train.main(["--resume", str(checkpoint.parent), "--config", "configs/celeba.yaml"])
    assert_one_line_error(rc, capsys, "drop --config configs/celeba.yaml")


@pytest.mark.parametrize("option, fragment", [(["--device", "gpu"], "--device 'gpu': expected auto, cpu"),
                                              (["--workers", "-1"], "--workers -1: expected >= 0"),
                                              (["--tight", "-5"], "--tight -5: expected >= 0"),
                                              (["--image-size", "24"], "--image-size 24: expected a multiple of 16")])
def test_bad_extraction_flags_stop_with_one_line(checkpoint, synthetic_root, tmp_path, capsys, option, fragment):
    out = tmp_path / "det"
    rc = extract_data.main(["--checkpoint", str(checkpoint), "--data-root", str(synthetic_root), "--out", str(out),
                            "--quiet", *option])
    assert_one_line_error(rc, capsys, fragment)
    assert not out.exists()


def test_extraction_checks_the_data_root_before_making_its_output_folder(checkpoint, tmp_path, capsys):
    out = tmp_path / "det"
    rc = extract_data.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "nowhere"),
                            "--out", str(out), "--quiet"])
    assert_one_line_error(rc, capsys, "nowhere")
    assert not out.exists()


def test_extraction_skips_and_counts_a_truncated_jpeg_when_asked(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "det"
    with pytest.warns(UserWarning, match=r"1 of 4 images do not decode \(first: .*000003\.jpg\)"):
        rc = extract_data.main(["--checkpoint", str(checkpoint), "--data-root", str(photos), "--splits", "folder",
                                "--out", str(out), "--workers", "0", "--quiet", "--skip-bad-images"])
    assert rc == 0
    assert list(load_detections(out / "folder.npz").names) == ["000001.jpg", "000002.jpg", "000004.jpg"]


# --- detect.py ---------------------------------------------------------------------------------


def test_detect_keeps_the_rows_of_images_done_before_a_bad_one(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "detect"
    rc = detect.main(["--checkpoint", str(checkpoint), str(photos), "--out", str(out), "--batch-size", "1", "--quiet"])
    assert_one_line_error(rc, capsys, "000003.jpg: truncated JPEG")
    lines = (out / "landmarks.csv").read_text().splitlines()
    assert lines[0] == "image,face,x0,y0,x1,y1,landmark,x,y" and len(lines) == 1 + 2 * 10
    assert {line.split(",")[0] for line in lines[1:]} == {str(photos / "000001.jpg"), str(photos / "000002.jpg")}


def test_detect_skips_and_counts_bad_images_when_asked(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "detect"
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 images that do not decode \(first: .*000003\.jpg\)"):
        rc = detect.main(["--checkpoint", str(checkpoint), str(photos), "--out", str(out), "--batch-size", "2",
                          "--quiet", "--skip-bad-images"])
    assert rc == 0
    lines = (out / "landmarks.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 10 and "skipped 1 bad images" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == [f"00000{i}_landmarks.png" for i in (1, 2, 4)]


def test_tensorboard_gets_the_scalars_and_the_picture_grids(synthetic_root, tmp_path, monkeypatch):
    logged = {"scalars": [], "images": []}

    class FakeWriter:  # tensorboard is optional and not installed in CI
        def __init__(self, folder):
            logged["folder"] = folder

        def add_scalar(self, key, value, step):
            logged["scalars"].append((key, step))

        def add_image(self, key, image, step, dataformats):
            logged["images"].append((key, image.shape, image.dtype, step, dataformats))

        def close(self):
            logged["closed"] = True

    monkeypatch.setattr(train, "import_summary_writer", lambda: FakeWriter)
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 2) + [
        "log.tensorboard=true", "log.image_every=2", "log.log_every=1", "validation.enabled=false"]) == 0
    assert logged["folder"].name == "tensorboard" and logged["closed"]
    assert ("total", 2) in logged["scalars"]
    ((key, shape, dtype, step, dataformats),) = logged["images"]
    assert (key, step, dataformats, dtype, shape[2]) == ("train_grid", 2, "HWC", "uint8", 3)


# --- eval_regressor.py -------------------------------------------------------------------------


def test_splits_extracted_with_different_margins_are_not_evaluated_together(checkpoint, synthetic_root, tmp_path,
                                                                            capsys):
    common = ["--checkpoint", str(checkpoint), "--data-root", str(synthetic_root), "--out", str(tmp_path / "det"),
              "--workers", "0", "--quiet"]
    assert extract_data.main(common + ["--splits", "mafl-train"]) == 0
    assert extract_data.main(common + ["--splits", "mafl-test", "--tight", "70"]) == 0
    capsys.readouterr()
    rc = eval_regressor.main(["--dir", str(tmp_path / "det"), "--dataset", "mafl", "--no-fewshot"])
    assert_one_line_error(rc, capsys, "mafl-test.npz: crop margin (tight) is 70 but 20 in the training file")
    assert not (tmp_path / "det" / "eval").exists()
