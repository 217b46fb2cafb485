"""Tests of eval_regressor.py: the detections file, the end-to-end report, and one-line user errors."""

from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest

import eval_regressor
from eval_regressor import main
from utils.evaluation.detections import load_detections, save_detections
from utils.errors import UserError
from utils.evaluation.protocol import mean_shape_fit

FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2)


SETTINGS = {"tight": 70, "image_size": 128, "bn_mode": "eval", "checkpoint_sha256": "ab12" * 16}


def write_split(path, n, k=4, split="mafl-train", seed=0, preview=0, checkpoint="runs/x/best.pt@ab12",
                settings=SETTINGS):
    """Write a synthetic detections file: K detected points, a noisy linear function of the 5 annotated.
    Image names follow the seed ('010003.jpg': seed 1, image 3), so splits written with other seeds are disjoint."""
    rng = np.random.default_rng(seed)
    annotated = FACE_XY_PX + rng.normal(scale=4.0, size=(n, 5, 2))  # (n, 5, 2)
    mixing = np.random.default_rng(99).normal(size=(2 * k, 10)) / 5  # (2K, 10), same for every split
    detected = 64 + (annotated.reshape(n, 10) - 64) @ mixing.T + rng.normal(scale=0.3, size=(n, 2 * k))
    images = rng.integers(0, 255, size=(preview, 64, 64, 3), dtype=np.uint8) if preview else None
    return save_detections(
        path, detected_xy_px=detected.reshape(n, k, 2), annotated_xy_px=annotated,
        names=[f"{seed:02d}{i:04d}.jpg" for i in range(n)], split=split, checkpoint=checkpoint,
        settings=settings, preview_images=images,
    )


@pytest.fixture
def pair(tmp_path):
    train = write_split(tmp_path / "mafl-train.npz", 80, seed=1)
    test = write_split(tmp_path / "mafl-test.npz", 20, split="mafl-test", seed=2, preview=3)
    return train, test


# --- the detections file -----------------------------------------------------------------------


def test_save_then_load_round_trips_and_leaves_no_temp_files(tmp_path):
    path = write_split(tmp_path / "mafl-test.npz", 6, k=3, split="mafl-test", preview=2)
    det = load_detections(path)
    assert (det.n, det.k, det.split, det.checkpoint) == (6, 3, "mafl-test", "runs/x/best.pt@ab12")
    assert det.detected_xy_px.dtype == np.float32 and det.annotated_xy_px.shape == (6, 5, 2)
    assert det.settings == SETTINGS
    assert det.preview_images.shape == (2, 64, 64, 3) and list(det.names[:2]) == ["000000.jpg", "000001.jpg"]
    assert [p.name for p in tmp_path.iterdir()] == ["mafl-test.npz"]


def test_save_accepts_other_split_names_and_an_empty_preview(tmp_path):
    path = save_detections(tmp_path / "celeba.npz", detected_xy_px=np.zeros((2, 3, 2)),
                           annotated_xy_px=np.stack([FACE_XY_PX] * 2), names=["a", "b"], split="celeba",
                           checkpoint="c", settings={}, preview_images=np.zeros((0, 1, 1, 3), np.uint8))
    det = load_detections(path)
    assert det.split == "celeba" and det.preview_images is None


def test_save_refuses_non_finite_points(tmp_path):
    with pytest.raises(UserError, match=r"non-finite detected points in 1 of 2 images \(first: b\)"):
        save_detections(tmp_path / "x.npz", detected_xy_px=np.array([[[1.0, 2.0]], [[np.nan, 0.0]]]),
                        annotated_xy_px=np.stack([FACE_XY_PX] * 2), names=["a", "b"], split="mafl-test",
                        checkpoint="c", settings={})
    assert not list(tmp_path.iterdir())


def test_an_unannotated_split_is_saved_but_the_regressor_refuses_it(pair, tmp_path, capsys):
    train, _ = pair
    folder = save_detections(tmp_path / "folder.npz", detected_xy_px=np.zeros((2, 4, 2)),
                             annotated_xy_px=np.full((2, 5, 2), np.nan), names=["a", "b"], split="folder",
                             checkpoint="c", settings=SETTINGS)
    assert not load_detections(folder).is_annotated and load_detections(train).is_annotated
    assert main(["--train", str(train), "--test", str(folder), "--no-fewshot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "folder.npz: split 'folder' has no annotated points; the regressor needs" in err
    partly = np.stack([FACE_XY_PX, np.full((5, 2), np.nan)])
    with pytest.raises(UserError, match=r"non-finite annotated points in 1 of 2 images \(first: b\)"):
        save_detections(tmp_path / "x.npz", detected_xy_px=np.zeros((2, 4, 2)), annotated_xy_px=partly,
                        names=["a", "b"], split="mafl-test", checkpoint="c", settings={})


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_main_prints_tables_and_writes_all_outputs(pair, tmp_path, capsys):
    train, test = pair
    out = tmp_path / "out"
    argv = ["--train", str(train), "--test", str(test), "--mode", "both", "--sizes", "1,5,all",
            "--repeats", "3", "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| **ours x/best.pt@ab12, K=4** | 4 |" in stdout
    assert "| Ours, all | 10 | 3.08 |" in stdout  # the paper's Table I row for MAFL
    assert "| 5 | 5 |" in stdout and "| paper Ours K=10 |" in stdout  # few-shot beside Table II
    for name in ("results.md", "results.json", "results.csv", "nme_vs_n.png", "per_landmark.png",
                 "test_faces.png"):
        assert (out / name).is_file(), name
    assert (out / "results.md").read_text() in stdout
    report = json.loads((out / "results.json").read_text())
    assert [e["size"] for e in report["fewshot"]] == [1, 5, "all"]
    assert len(report["fewshot"][1]["fwd"]["draws_percent"]) == 3
    assert report["fewshot"][2]["fwd"]["mean_percent"] == pytest.approx(report["main"]["fwd"]["nme_percent"])
    assert report["main"]["fwd"]["nme_percent"] < report["fewshot"][0]["fwd"]["mean_percent"]
    assert report["solver_check"]["nme_diff_percent"] < 1e-8
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows} == {"this run", "this run, no detector", "paper Table I", "paper Table II"}
    faces = cv2.imread(str(out / "test_faces.png"))
    assert faces.shape[0] > 128 + 2 * 2 and faces.shape[1] >= 3 * 128 + 4 * 2  # 3 previews upscaled, a legend


def test_default_out_dir_and_dir_dataset_resolution_with_mtfl_val(tmp_path, capsys):
    write_split(tmp_path / "mtfl-train.npz", 30, split="mtfl-train")
    write_split(tmp_path / "mtfl-val.npz", 10, split="mtfl-val", seed=3)
    assert main(["--dir", str(tmp_path), "--dataset", "mtfl", "--no-fewshot"]) == 0
    stdout = capsys.readouterr().out
    assert "paper Table I" not in stdout  # no paper column for MTFL
    assert "test_faces.png skipped" in stdout
    assert (tmp_path / "eval" / "results.md").is_file()


def test_reference_switches_reproduce_the_reference_quirks(pair, tmp_path):
    train, test = pair
    common = ["--train", str(train), "--test", str(test), "--mode", "bwd", "--sizes", "5", "--repeats", "4"]
    assert main([*common, "--out", str(tmp_path / "ours")]) == 0
    assert main([*common, "--out", str(tmp_path / "ref"), "--reference-fewshot", "--reference-backward"]) == 0
    ours = json.loads((tmp_path / "ours" / "results.json").read_text())
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())
    # K = 4: the reference divides the summed error by 10 instead of 4.
    assert ref["main"]["bwd"]["nme_percent"] == pytest.approx(ours["main"]["bwd"]["nme_percent"] * 4 / 10)
    assert (ours["fewshot"][0]["images_per_draw"], ours["fewshot"][0]["draws"]) == (5, 4)
    assert (ref["fewshot"][0]["images_per_draw"], ref["fewshot"][0]["draws"]) == (6, 1)


# --- baseline rows ------------------------------------------------------------------------------


def test_mean_training_shape_row_matches_a_hand_computation(tmp_path, capsys):
    # Training shapes F and F + (2, 0) average to F + (1, 0). Test face 0 is F (eyes 40 px apart):
    # 1 px off at every point, 2.5 %. Test face 1 is 2F - 64 (F scaled by 2 about (64, 64), eyes 80 px
    # apart): F = (44,52) (84,52) (64,74) (48,96) (80,96) -> 2F - 64 = (24,40) (104,40) (64,84) (32,128)
    # (96,128); minus the mean shape (45,52) (85,52) (65,74) (49,96) (81,96), the offsets are below.
    # Their lengths 24.19, 22.47, 10.05, 36.24, 35.34 average 25.66 px: 32.07 % of 80 px. NME 17.29 %.
    two_faces = np.stack([FACE_XY_PX, FACE_XY_PX + [2.0, 0.0]])  # (2, 5, 2)
    test_faces = np.stack([FACE_XY_PX, 2 * FACE_XY_PX - 64])  # (2, 5, 2)
    common = {"checkpoint": "c", "settings": SETTINGS}
    save_detections(tmp_path / "mafl-train.npz", detected_xy_px=two_faces[:, :3] + 0.1 * np.arange(2)[:, None, None],
                    annotated_xy_px=two_faces, names=["a", "b"], split="mafl-train", **common)
    save_detections(tmp_path / "mafl-test.npz", detected_xy_px=test_faces[:, :3], annotated_xy_px=test_faces,
                    names=["c", "d"], split="mafl-test", **common)
    assert main(["--dir", str(tmp_path), "--dataset", "mafl", "--no-fewshot", "--paper-table", "none"]) == 0
    offsets = np.array([[-21, -12], [19, -12], [-1, 10], [-17, 32], [15, 32]], dtype=float)
    face_1 = np.linalg.norm(offsets, axis=1).mean() / 80  # 0.3207
    expected = 100 * (1 / 40 + face_1) / 2
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    (row,) = report["baselines"]
    assert (row["label"], row["k"], list(row["main"])) == ("mean training shape", None, ["fwd"])
    assert row["main"]["fwd"]["nme_percent"] == pytest.approx(expected, rel=1e-12)
    assert round(expected, 2) == 17.29
    assert f"| mean training shape |  | {expected:.2f} | this run, no detector |" in capsys.readouterr().out
    with open(tmp_path / "eval" / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "mean training shape"]
    assert len(rows) == 1 and float(rows[0]["nme_percent"]) == pytest.approx(expected)


def test_mean_shape_fit_by_hand():
    fit = mean_shape_fit(np.stack([FACE_XY_PX, FACE_XY_PX + [2.0, 0.0]]), FACE_XY_PX[None])
    assert fit.errors == pytest.approx([1 / 40]) and fit.point_errors == pytest.approx(np.full((1, 5), 1 / 40))


def test_compare_rows_join_the_main_table(pair, tmp_path, capsys):
    train, test = pair
    other = tmp_path / "other"
    init = {**SETTINGS, "checkpoint_sha256": "cd34" * 16}
    write_split(other / "mafl-train.npz", 80, k=6, seed=1, checkpoint="runs/init.pt", settings=init)
    write_split(other / "mafl-test.npz", 20, k=6, split="mafl-test", seed=2, checkpoint="runs/init.pt", settings=init)
    out = tmp_path / "out"
    argv = ["--train", str(train), "--test", str(test), "--mode", "both", "--no-fewshot", "--out", str(out),
            "--compare", f"same={tmp_path}", "--compare", f"untrained detector={other}"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    same, untrained, mean_shape = report["baselines"]
    assert [b["label"] for b in report["baselines"]] == ["same", "untrained detector", "mean training shape"]
    for mode in ("fwd", "bwd"):  # the same folder as ours gives our numbers exactly
        assert same["main"][mode]["nme_percent"] == report["main"][mode]["nme_percent"]
    assert untrained["k"] == 6 and untrained["files"]["train"]["checkpoint"] == "runs/init.pt"
    assert untrained["main"]["fwd"]["nme_percent"] != report["main"]["fwd"]["nme_percent"]
    ours = report["main"]["fwd"]["nme_percent"]
    assert f"| same | 4 | {ours:.2f} |" in stdout
    assert f"| untrained detector | 6 | {untrained['main']['fwd']['nme_percent']:.2f} |" in stdout
    assert "compare" not in report["settings"]
    with open(out / "results.csv", newline="") as f:
        methods = [(r["method"], r["mode"]) for r in csv.DictReader(f) if r["table"] == "main"]
    assert methods.count(("untrained detector", "bwd")) == 1 and methods.count(("mean training shape", "fwd")) == 1


def test_compare_warns_when_its_test_faces_differ(pair, tmp_path, capsys):
    train, test = pair
    other = tmp_path / "other"
    write_split(other / "mafl-train.npz", 30, seed=1)
    write_split(other / "mafl-test.npz", 10, split="mafl-test", seed=2)
    argv = ["--train", str(train), "--test", str(test), "--no-fewshot", "--out", str(tmp_path / "out"),
            "--compare", f"few={other}"]
    assert main(argv) == 0
    assert "warning: --compare 'few': its test faces" in capsys.readouterr().err


@pytest.mark.parametrize("key, value, what", [("tight", 20, "crop margin"), ("image_size", 32, "crop size"),
                                             ("bn_mode", "train", "BatchNorm mode"),
                                             ("checkpoint_sha256", "ef56" * 16, "checkpoint content hash")])
def test_a_pair_extracted_with_different_settings_is_refused_naming_both_values(tmp_path, capsys, key, value, what):
    train = write_split(tmp_path / "mafl-train.npz", 80, seed=1)
    test = write_split(tmp_path / "mafl-test.npz", 20, split="mafl-test", seed=2, settings={**SETTINGS, key: value})
    assert main(["--train", str(train), "--test", str(test), "--no-fewshot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"mafl-test.npz: {what} ({key}) is {value!r} but {SETTINGS[key]!r}" in err
    assert not (tmp_path / "eval").exists()


def test_the_checkpoint_is_compared_by_content_not_by_path(tmp_path, capsys):
    train = write_split(tmp_path / "mafl-train.npz", 80, seed=1, checkpoint="runs/x/last.pt")
    test = write_split(tmp_path / "mafl-test.npz", 20, split="mafl-test", seed=2, checkpoint="copy/step_9.pt")
    assert main(["--train", str(train), "--test", str(test), "--no-fewshot"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_compare_pair_with_mixed_settings_is_refused(pair, tmp_path, capsys):
    train, test = pair
    other = tmp_path / "other"
    write_split(other / "mafl-train.npz", 80, seed=1)
    write_split(other / "mafl-test.npz", 20, split="mafl-test", seed=2, settings={**SETTINGS, "tight": 20})
    assert main(["--train", str(train), "--test", str(test), "--no-fewshot", "--compare", f"init={other}"]) == 2
    assert "other/mafl-test.npz: crop margin (tight) is 20 but 70" in capsys.readouterr().err


def test_files_without_the_settings_give_a_warning_not_a_refusal(tmp_path, capsys):
    old = {"tight": 70, "bn_mode": "eval"}
    train = write_split(tmp_path / "mafl-train.npz", 80, seed=1, settings=old)
    test = write_split(tmp_path / "mafl-test.npz", 20, split="mafl-test", seed=2, settings=old)
    assert main(["--train", str(train), "--test", str(test), "--no-fewshot"]) == 0
    assert "cannot check that both splits used the same image_size, checkpoint_sha256" in capsys.readouterr().err


# --- user errors -------------------------------------------------------------------------------


def _bad_file(path, **replace):
    """Write a detections-like npz directly (bypassing save_detections' checks), with keys replaced."""
    arrays = {"detected": np.full((3, 4, 2), 50, np.float32),
              "annotated": np.stack([FACE_XY_PX] * 3).astype(np.float32),
              "names": np.array(["a", "b", "c"]), "split": np.array("mafl-test"),
              "checkpoint": np.array("runs/x/best.pt@ab12"), "settings": np.array("{}")}
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", r"mafl-test-missing.npz: file not found"),
        ("train_is_test", r"split is 'mafl-test'; --train needs a training split"),
        ("other_dataset", r"dataset 'aflw' differs from the training file's 'mafl'"),
        ("k_mismatch", r"K=6 detected points but the training file has K=4"),
        ("too_many", r"few-shot sizes \[500\] exceed its 80 training images"),
        ("empty", r"the file holds no images"),
        ("nan", r"non-finite detected points in 1 of 3 images \(first: b\)"),
        ("missing_key", r"missing keys \['names'\]"),
        ("bad_sizes", r"--sizes: 'ten' is not a positive integer or 'all'"),
        ("no_part", r"split 'celeba' is not '<dataset>-train\|val\|test'"),
        ("compare_syntax", r"--compare 'untrained': expected LABEL=DIR"),
        ("compare_twice", r"--compare: label 'a' is given twice"),
        ("compare_missing", r"nowhere/mafl-train.npz: file not found"),
        ("compare_dataset", r"mafl-train.npz: --compare 'x' holds dataset 'aflw'; expected ours, 'mafl'"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_code_2(pair, tmp_path, capsys, case, message):
    train, test = pair
    argv = {"train": str(train), "test": str(test), "sizes": "1,all"}
    nan_points = np.full((3, 4, 2), 50, np.float32)
    nan_points[1, 2, 0] = np.nan
    if case == "missing":
        argv["test"] = str(tmp_path / "mafl-test-missing.npz")
    elif case == "train_is_test":
        argv["train"] = str(test)
    elif case == "other_dataset":
        argv["test"] = str(write_split(tmp_path / "aflw-test.npz", 10, split="aflw-test"))
    elif case == "k_mismatch":
        argv["test"] = str(write_split(tmp_path / "k6.npz", 10, k=6, split="mafl-test"))
    elif case == "too_many":
        argv["sizes"] = "1,500,all"
    elif case == "empty":
        argv["test"] = str(_bad_file(tmp_path / "e.npz", detected=np.zeros((0, 4, 2), np.float32),
                                     annotated=np.zeros((0, 5, 2), np.float32), names=np.array([], str)))
    elif case == "nan":
        argv["test"] = str(_bad_file(tmp_path / "n.npz", detected=nan_points))
    elif case == "missing_key":
        argv["test"] = str(_bad_file(tmp_path / "m.npz", names=None))
    elif case == "bad_sizes":
        argv["sizes"] = "1,ten"
    elif case == "no_part":
        argv["test"] = str(write_split(tmp_path / "celeba.npz", 10, split="celeba"))
    compare = {"compare_syntax": ["untrained"], "compare_twice": [f"a={tmp_path}", f"a={tmp_path}"],
               "compare_missing": [f"x={tmp_path / 'nowhere'}"], "compare_dataset": [f"x={tmp_path / 'aflw'}"]}
    if case == "compare_dataset":  # files named mafl-* that hold an AFLW pair
        write_split(tmp_path / "aflw" / "mafl-train.npz", 10, split="aflw-train")
        write_split(tmp_path / "aflw" / "mafl-test.npz", 10, split="aflw-test", seed=2)
    status = main(["--train", argv["train"], "--test", argv["test"], "--sizes", argv["sizes"],
                   "--repeats", "2", "--out", str(tmp_path / "out"),
                   *[arg for item in compare.get(case, []) for arg in ("--compare", item)]])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err


def test_help_mentions_when_to_change_options(capsys):
    with pytest.raises(SystemExit):
        eval_regressor.main(["--help"])
    text = capsys.readouterr().out
    assert "--reference-fewshot" in text and "--no-bias" in text and "--no-fewshot" in text
    assert "--compare LABEL=DIR" in text


def test_default_sizes_leave_out_those_larger_than_the_train_split_but_given_sizes_must_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.uniform(30, 100, size=(40, 5, 2)).astype(np.float32)
    for split, rows in (("mafl-train", slice(0, 30)), ("mafl-test", slice(30, 40))):
        save_detections(tmp_path / f"{split}.npz", detected_xy_px=gt[rows] + 1, annotated_xy_px=gt[rows],
                        names=[f"{i}.jpg" for i in range(40)][rows], split=split, checkpoint="c", settings={})
    assert main(["--dir", str(tmp_path), "--dataset", "mafl", "--repeats", "2"]) == 0
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert report["settings"]["sizes"] == [1, 5, 10, "all"]
    capsys.readouterr()
    assert main(["--dir", str(tmp_path), "--dataset", "mafl", "--sizes", "1,100", "--overwrite"]) == 2
    assert "few-shot sizes [100] exceed its 30 training images" in capsys.readouterr().err


def test_report_shows_collapse_measures_warns_on_a_blob_and_draws_raw_points(tmp_path, capsys):
    annotated = FACE_XY_PX + np.random.default_rng(0).normal(scale=4.0, size=(30, 5, 2))
    blob = 64 + np.random.default_rng(1).normal(scale=0.05, size=(30, 6, 2))  # six points in one blob
    images = np.zeros((4, 64, 64, 3), np.uint8)
    for split, n in (("mafl-train", 20), ("mafl-test", 10)):
        rows = slice(0, 20) if split == "mafl-train" else slice(20, 30)
        save_detections(tmp_path / f"{split}.npz", detected_xy_px=blob[rows], annotated_xy_px=annotated[rows],
                        names=[f"{i}.jpg" for i in range(30)][rows], split=split, checkpoint="c",
                        settings={"tight": 70}, preview_images=images if split == "mafl-test" else None)
    assert main(["--dir", str(tmp_path), "--dataset", "mafl", "--no-fewshot", "--paper-table", "none"]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert report["collapse"]["distinct"] == 0 and report["collapse"]["num_points"] == 6
    assert report["collapse"]["spread"] < 0.05
    assert "| method | spread | distinct landmarks | closest pair (IOD) | part lock |" in captured.out
    assert "0 of 6" in captured.out and "**Warning:** the detected points look collapsed" in captured.out
    assert "| annotated points (reference) | 1.00 | 5 of 5 |" in captured.out
    assert report["collapse_annotated"]["spread"] == pytest.approx(1.0)
    assert "look collapsed" in captured.err
    raw = cv2.cvtColor(cv2.imread(str(tmp_path / "eval" / "test_points.png")), cv2.COLOR_BGR2RGB)
    assert raw.shape == (128 + 2 * 2, 4 * 128 + 5 * 2, 3)
    colours = {tuple(c) for c in raw.reshape(-1, 3)} - {(0, 0, 0), (255, 255, 255)}
    assert len(colours) >= 6  # one colour per landmark (plus anti-aliased blends)


def test_help_gives_the_usage_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "python eval_regressor.py --dir runs/celeba_k10/detections --dataset mafl\n" in text
    assert ('python eval_regressor.py --dir runs/x/detections-last --dataset mafl \\\n'
            '        --compare "untrained detector=runs/x/detections-init"') in text
