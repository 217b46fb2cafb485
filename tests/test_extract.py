"""extract_data.py end to end on the synthetic set, and the whole pipeline: train -> extract -> evaluate."""

from pathlib import Path

import numpy as np
import pytest
import torch

import eval_regressor
import extract_data
import train
from helpers import tiny_train_overrides
from datasets import build_eval_dataset
from model import load_model
from utils.checkpoint import file_sha256
from utils.evaluation.detections import load_detections
from utils.extraction import extract_points
from utils.visualize import rescale_points_px

REPO = Path(__file__).resolve().parents[1]
TRAIN_TIGHT = 40  # the fixture run's crop margin; extraction uses it unless --tight says otherwise


@pytest.fixture(scope="module")
def run_dir(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    argv = ["--config", str(REPO / "configs" / "synthetic.yaml"), *tiny_train_overrides(synthetic_root, out, 6),
            "model.num_points=7", "validation.enabled=false", "log.save_init=true", f"data.tight={TRAIN_TIGHT}"]
    assert train.main(argv) == 0
    (run,) = out.iterdir()
    return run


def test_rescaling_to_the_128_px_scale_keeps_pixel_centres():
    # The centre of a 32 px crop (15.5) is the centre of a 128 px crop (63.5); pixel 0 covers 0..4 -> 1.5.
    assert np.allclose(rescale_points_px(np.array([15.5, 0.0]), (32, 32), (128, 128)), [63.5, 1.5])


def test_extraction_writes_one_file_per_split_with_detections_in_128_px(run_dir, synthetic_root, capsys):
    out = run_dir / "det"
    assert extract_data.main(["--checkpoint", str(run_dir), "--data-root", str(synthetic_root), "--splits",
                              "mafl-train,mafl-test", "--out", str(out), "--workers", "0", "--quiet"]) == 0
    train_file = load_detections(out / "mafl-train.npz")
    test_file = load_detections(out / "mafl-test.npz")
    assert (train_file.n, test_file.n) == (108, 12) and train_file.k == 7
    assert train_file.split == "mafl-train" and "sha256:" in train_file.checkpoint
    assert train_file.settings["bn_mode"] == "eval" and train_file.settings["image_size"] == 32
    assert train_file.settings["tight"] == TRAIN_TIGHT
    assert train_file.settings["synthetic"] is True  # datasets.synthetic marks its root; reports say "synthetic"
    assert train_file.settings["checkpoint_sha256"] == file_sha256(run_dir / "last.pt")
    assert train_file.checkpoint.endswith("sha256:" + file_sha256(run_dir / "last.pt")[:12])
    # annotated points: the 32 px evaluation crop's points, rescaled to the 128 px scale
    crops = build_eval_dataset("mafl-test", synthetic_root, image_size=32, tight=TRAIN_TIGHT)
    expected = rescale_points_px(crops[3]["points"].numpy(), (32, 32), (128, 128))
    assert np.allclose(test_file.annotated_xy_px[3], expected, atol=1e-4)
    assert test_file.names[3] == crops[3]["name"]
    # detections agree with running the model by hand on the same crops
    model, _, _ = load_model(run_dir / "last.pt")
    with torch.no_grad():
        points_hm, _ = model.detect(crops[3]["image"][None])
    by_hand = rescale_points_px((points_hm[0].numpy() + 0.5) * 4 - 0.5, (32, 32), (128, 128))
    assert np.allclose(test_file.detected_xy_px[3], by_hand, atol=1e-4)
    assert test_file.detected_xy_px.min() > -1 and test_file.detected_xy_px.max() < 128
    assert test_file.preview_images.shape == (12, 32, 32, 3)
    assert "mafl-test: 12 faces" in capsys.readouterr().out


def test_tight_overrides_the_training_crop_margin(run_dir, synthetic_root):
    out = run_dir / "det70"
    assert extract_data.main(["--checkpoint", str(run_dir), "--data-root", str(synthetic_root), "--splits", "mafl-test",
                              "--out", str(out), "--workers", "0", "--quiet", "--tight", "70", "--limit", "4"]) == 0
    test_file = load_detections(out / "mafl-test.npz")
    assert test_file.settings["tight"] == 70
    crops70 = build_eval_dataset("mafl-test", synthetic_root, image_size=32, tight=70)
    crops40 = build_eval_dataset("mafl-test", synthetic_root, image_size=32, tight=TRAIN_TIGHT)
    expected = rescale_points_px(crops70[2]["points"].numpy(), (32, 32), (128, 128))
    assert np.allclose(test_file.annotated_xy_px[2], expected, atol=1e-4)
    assert not np.allclose(crops40[2]["points"].numpy(), crops70[2]["points"].numpy(), atol=0.5)


def test_batchnorm_train_mode_depends_on_the_batch_and_leaves_the_model_unchanged(run_dir, synthetic_root):
    model, _, _ = load_model(run_dir / "last.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    crops = build_eval_dataset("mafl-test", synthetic_root, image_size=32)
    eval_a = extract_points_of(model, crops, 12, "eval")
    eval_b = extract_points_of(model, crops, 5, "eval")
    train_a = extract_points_of(model, crops, 12, "train")
    train_b = extract_points_of(model, crops, 5, "train")
    assert np.allclose(eval_a, eval_b, atol=1e-5)  # eval: independent of the batch
    assert not np.allclose(train_a, train_b, atol=1e-3)  # train: batch statistics
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def extract_points_of(model, dataset, batch_size, bn_mode):
    return extract_points(model, dataset, batch_size=batch_size, bn_mode=bn_mode, progress=False)["detected"]


@pytest.mark.slow
def test_the_whole_pipeline_prints_an_nme_table(run_dir, synthetic_root, capsys):
    for name in ("last", "init"):
        assert extract_data.main(["--checkpoint", str(run_dir / f"{name}.pt"), "--data-root", str(synthetic_root),
                                  "--out", str(run_dir / name), "--workers", "0", "--quiet"]) == 0
    rc = eval_regressor.main(["--dir", str(run_dir / "last"), "--dataset", "mafl", "--paper-table", "none",
                              "--compare", f"untrained detector={run_dir / 'init'}", "--sizes", "1,5,all",
                              "--repeats", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mean training shape" in out and "untrained detector" in out
    assert "# Landmark regression: synthetic, K=7" in out and "MAFL fwd" not in out
    assert (run_dir / "last" / "eval" / "results.md").exists()


def test_an_image_folder_extracts_without_annotations(run_dir, synthetic_root, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        (photos / name).write_bytes((synthetic_root / "Img" / "img_align_celeba" / name).read_bytes())
    out = tmp_path / "det"
    assert extract_data.main(["--checkpoint", str(run_dir), "--data-root", str(photos), "--splits", "folder",
                              "--out", str(out), "--workers", "0", "--quiet"]) == 0
    folder = load_detections(out / "folder.npz")
    assert folder.n == 3 and not folder.is_annotated and np.isfinite(folder.detected_xy_px).all()


def test_bad_extraction_inputs_are_one_line(run_dir, synthetic_root, tmp_path, capsys):
    assert extract_data.main(["--checkpoint", str(tmp_path), "--data-root", str(synthetic_root)]) == 2
    assert "no checkpoint in this run folder" in capsys.readouterr().err
    assert extract_data.main(["--checkpoint", str(run_dir), "--data-root", str(synthetic_root), "--splits", "mafl-val"]) == 2
    assert "unknown split" in capsys.readouterr().err
    not_ours = tmp_path / "model_33.fan.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, not_ours)
    assert extract_data.main(["--checkpoint", str(not_ours), "--data-root", str(synthetic_root)]) == 2
    assert "not a checkpoint of this repository" in capsys.readouterr().err
