"""Bad data sets, on the data side of "no silently wrong number and no lost run": each fault is refused when the
split is loaded, with one line naming the file and line (or face) and what to do, or, with skip_bad_images, skipped
and counted by one SkippedDataWarning. Driven through the readers and through the scripts' real main()s (exit code
2, one 'error: ' line on stderr, nothing written)."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import detect
import extract_data
import train
from datasets import SkippedDataWarning, SmallImageWarning, build_eval_dataset, build_train_dataset, load_records
from datasets.records import MIN_IMAGE_SIDE, POINT_TOLERANCE, SKIP_HINT, read_image_rgb
from datasets.synthetic import generate
from helpers import (CONFIG, assert_one_line_error, make_aflw, make_celeba, make_mtfl, shared, tiny_train_overrides,
                     write_image)
from utils.errors import UserError
from utils.evaluation.detections import load_detections

SKIP = re.escape(f"({SKIP_HINT})")  # every refusal of something skippable names both spellings of the option
LANDMARKS = Path("Anno") / "list_landmarks_align_celeba.txt"
IMAGES = Path("Img") / "img_align_celeba"


def set_row(root: Path, name: str, values: str) -> int:
    """Replace the landmark row of `name` by `name values`; returns its line number."""
    path = root / LANDMARKS
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
    lines[index] = f"{name} {values}"
    path.write_text("\n".join(lines) + "\n")
    return index + 1


@pytest.fixture
def celeba(tmp_path) -> Path:
    """24 synthetic faces in the CelebA layout: MAFL train 000001-000022 (landmark lines 3-24), test 000023-24."""
    return generate(tmp_path / "celeba", num_images=24, seed=0)


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A tiny model trained for 2 steps (32 px crops)."""
    out = tmp_path_factory.mktemp("bad_data_run")
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, out, 2) + ["validation.enabled=false"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir / "last.pt"


def extract(checkpoint: Path, root: Path, split: str, out: Path, *flags: str) -> int:
    return extract_data.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--splits", split,
                              "--out", str(out), "--workers", "0", "--quiet", *flags])


def train_argv(root: Path, out: Path, *overrides: str) -> list[str]:
    return CONFIG + tiny_train_overrides(root, out, 2) + ["validation.enabled=false", *overrides]


# --- 1. a name listed twice, or in both the train and the test list: a data error, never skipped ----------------


def test_a_name_listed_twice_in_a_mafl_list_is_refused_with_both_line_numbers(tmp_path):
    root = make_celeba(tmp_path, train=("000002.jpg", "031524.jpg", "000004.jpg", "000002.jpg", "000004.jpg",
                                        "000004.jpg"))
    for skip in (False, True):  # not skippable: dropping one copy would hide which list is wrong
        with pytest.raises(UserError, match=r"MAFL/training\.txt:4: 000002\.jpg is listed twice \(first at line 1\); "
                                            r"2 names are listed more than once; expected each image once: "
                                            r"delete the repeated lines$"):
            load_records("mafl-train", root, skip_bad_images=skip)
    with pytest.raises(UserError, match=r"training\.txt:4: 000002\.jpg is listed twice"):
        load_records("celeba", root)  # training.txt is checked whenever it is there
    (root / "MAFL" / "testing.txt").write_text("000001.jpg\n\n000001.jpg\n")
    with pytest.raises(UserError, match=r"MAFL/testing\.txt:3: 000001\.jpg is listed twice \(first at line 1\); "
                                        r"1 name is listed more than once"):
        load_records("mafl-test", root)


def test_a_mafl_test_face_also_listed_for_training_is_refused_in_every_split(tmp_path):
    root = make_celeba(tmp_path, train=("000002.jpg", "000001.jpg", "000004.jpg"), test=("000001.jpg",))
    for split in ("mafl-train", "mafl-test", "celeba"):
        with pytest.raises(UserError, match=r"MAFL/testing\.txt:1: 1 name of .*MAFL/testing\.txt is also in "
                                            r".*MAFL/training\.txt \(first: 000001\.jpg, line 2 there\): "
                                            r"a test face must not be trained on"):
            load_records(split, root, skip_bad_images=True)


def test_aflw_and_mtfl_lists_with_repeated_or_shared_names_are_refused(tmp_path):
    aflw = make_aflw(tmp_path / "aflw")
    (aflw / "aflw_train_images.txt").write_text("imagetrain00_1.jpg\nimagetrain01_1.jpg\nimagetrain00_1.jpg\n")
    with pytest.raises(UserError, match=r"aflw_train_images\.txt:3: imagetrain00_1\.jpg is listed twice "
                                        r"\(first at line 1\)"):
        load_records("aflw-train", aflw)
    aflw = make_aflw(tmp_path / "aflw2")
    (aflw / "aflw_test_images.txt").write_text("imagetrain01_1.jpg\n")
    for split in ("aflw-train", "aflw-test"):
        with pytest.raises(UserError, match=r"aflw_test_images\.txt:1: 1 name of .* is also in .*aflw_train_images"
                                            r"\.txt \(first: imagetrain01_1\.jpg, line 2 there\)"):
            load_records(split, aflw)

    mtfl = make_mtfl(tmp_path / "mtfl", count=5, with_test=True)
    lines = (mtfl / "training.txt").read_bytes().decode().split("\r\n")
    repeated = " lfw_5590/face_001.jpg" + lines[1].split("jpg", 1)[1]  # the same image, written with a slash
    (mtfl / "training.txt").write_bytes("\r\n".join(lines[:5] + [repeated] + lines[5:]).encode())
    with pytest.raises(UserError, match=r"training\.txt:6: lfw_5590/face_001\.jpg is listed twice \(first at line 2\)"):
        load_records("mtfl-train", mtfl, skip_bad_images=True)
    mtfl = make_mtfl(tmp_path / "mtfl2", count=5, with_test=True)
    (mtfl / "testing.txt").write_bytes((lines[3] + "\r\n").encode())  # net_7876\face_003.jpg, line 4 of training
    for split in ("mtfl-train", "mtfl-val", "mtfl-test"):
        with pytest.raises(UserError, match=r"testing\.txt:1: 1 name of .* is also in .*training\.txt "
                                            r"\(first: net_7876/face_003\.jpg, line 4 there\)"):
            load_records(split, mtfl)


@pytest.mark.slow
def test_training_on_a_list_with_a_repeated_name_stops_before_the_run_folder(celeba, tmp_path, capsys):
    train_list = celeba / "MAFL" / "training.txt"
    train_list.write_text(train_list.read_text() + "\n000007.jpg")  # line 23 repeats line 7
    out = tmp_path / "runs"
    assert_one_line_error(train.main(train_argv(celeba, out)), capsys,
                          f"{train_list}:23: 000007.jpg is listed twice (first at line 7)")
    assert not out.exists()


def test_extraction_of_a_test_list_sharing_a_training_face_stops_before_writing(checkpoint, celeba, tmp_path,
                                                                                 capsys):
    (celeba / "MAFL" / "testing.txt").write_text("000023.jpg\n000024.jpg\n000005.jpg")
    out = tmp_path / "det"
    assert_one_line_error(extract(checkpoint, celeba, "mafl-test", out, "--skip-bad-images"), capsys,
                          "testing.txt:3: 1 name of", "(first: 000005.jpg, line 5 there): a test face must not")
    assert not out.exists()


# --- 2. a name annotated twice in the CelebA landmark file ------------------------------------------------------


def test_a_name_annotated_twice_is_refused_with_both_lines_before_the_count_is_checked(tmp_path):
    root = make_celeba(tmp_path)
    path = root / LANDMARKS
    lines = path.read_text().splitlines()
    lines.append("000002.jpg   1   2   3   4   5   6   7   8   9  10")  # line 7; line 4 holds 000002 too
    for count in ("4", "5"):  # the count line unchanged (4 names, 5 rows) or counting the extra row
        lines[0] = count
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(UserError) as info:
            load_records("mafl-train", root, skip_bad_images=True)
        assert re.search(r"list_landmarks_align_celeba\.txt:7: 000002\.jpg is annotated twice \(first at line 4\); "
                         r"1 name is annotated more than once; expected each image once: delete the repeated rows$",
                         str(info.value)), info.value
        assert "count" not in str(info.value) and "truncated" not in str(info.value)


def test_the_count_line_message_does_not_guess_truncation_when_the_file_is_longer(tmp_path):
    root = make_celeba(tmp_path)
    path = root / LANDMARKS
    path.write_text("3\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(UserError, match=r":1: the count line says 3 rows but the file has 4 \(rows added after the "
                                        r"count was written\?\); expected them to agree$"):
        load_records("celeba", root)


# --- 3. non-finite annotations ------------------------------------------------------------------------------------


def test_a_nan_in_the_celeba_landmark_file_is_refused_with_its_line_or_skipped(tmp_path):
    root = make_celeba(tmp_path)
    line = set_row(root, "000002.jpg", " 70 111 109 112  88 nan  72 152 105 154")
    assert line == 4
    for split in ("mafl-train", "mafl-test"):  # the whole file is checked when it is loaded
        with pytest.raises(UserError, match=r"list_landmarks_align_celeba\.txt:4: 000002\.jpg has y3 = nan; 1 of 4 "
                                            r"rows of list_landmarks_align_celeba\.txt hold a non-finite value; "
                                            r"expected finite pixel coordinates: fix or delete those rows " + SKIP):
            load_records(split, root)
    with pytest.warns(SkippedDataWarning, match=r"skipping bad data: 1 of 2 faces have non-finite points \(first: "
                                                r".*list_landmarks_align_celeba\.txt:4: 000002\.jpg: point 3 \(nose\) "
                                                r"is \(88, nan\)\)"):
        records = load_records("mafl-train", root, skip_bad_images=True)
    assert [r.name for r in records] == ["000004.jpg"]
    assert [r.name for r in load_records("mafl-test", root, skip_bad_images=True)] == ["000001.jpg"]


def test_an_inf_in_mtfl_and_nan_faces_in_an_aflw_mat_are_refused_or_skipped(tmp_path):
    mtfl = make_mtfl(tmp_path / "mtfl", count=10)
    text = (mtfl / "training.txt").read_bytes().decode()
    text = text.replace("face_002.jpg 32.000000 60.000000", "face_002.jpg 32 inf")  # x2 of line 3
    (mtfl / "training.txt").write_bytes(text.encode())
    with pytest.raises(UserError, match=r"training\.txt:3: lfw_5590\\face_002\.jpg has x2 = inf; 1 of 10 rows of "
                                        r"training\.txt hold a non-finite value; .*" + SKIP):
        load_records("mtfl-val", mtfl)
    with pytest.warns(SkippedDataWarning, match=r"1 of \d+ faces have non-finite points \(first: .*training\.txt:3: "
                                                r"lfw_5590/face_002\.jpg: point 2 \(right eye\) is \(inf, 41\)\)"):
        records = (load_records("mtfl-train", mtfl, skip_bad_images=True)
                   + load_records("mtfl-val", mtfl, skip_bad_images=True))
    assert len(records) == 9 and "lfw_5590/face_002.jpg" not in {r.name for r in records}

    aflw = make_aflw(tmp_path / "aflw")
    mat = aflw / "aflw_train_keypoints.mat"
    gt = scipy.io.loadmat(str(mat))["gt"]
    gt[1] = np.nan  # an N x 5 x 2 array with a NaN face
    scipy.io.savemat(str(mat), {"gt": gt})
    with pytest.raises(UserError, match=r"aflw_train_keypoints\.mat face 2: imagetrain01_1\.jpg \(aflw_train_images"
                                        r"\.txt line 2\) has \(y, x\) = \(nan, nan\) at point 1; 1 of 3 faces of "
                                        r"aflw_train_keypoints\.mat hold a non-finite value; .*" + SKIP):
        load_records("aflw-train", aflw)
    with pytest.warns(SkippedDataWarning, match=r"1 of 3 faces have non-finite points \(first: .*aflw_train_keypoints"
                                                r"\.mat face 2: imagetrain01_1\.jpg: point 1 \(left eye\)"):
        records = load_records("aflw-train", aflw, skip_bad_images=True)
    assert [r.name for r in records] == ["imagetrain00_1.jpg", "imagetrain02_1.jpg"]


def test_training_on_a_nan_row_stops_before_the_run_folder(celeba, tmp_path, capsys):
    line = set_row(celeba, "000003.jpg", "nan 100 110 100 90 120 75 140 105 140")
    out = tmp_path / "runs"
    assert_one_line_error(train.main(train_argv(celeba, out)), capsys,
                          f"{celeba / LANDMARKS}:{line}: 000003.jpg has x1 = nan", "--skip-bad-images")
    assert not out.exists()


@pytest.mark.slow
def test_training_skips_and_counts_a_nan_row_when_asked(celeba, tmp_path, capsys):
    set_row(celeba, "000003.jpg", "nan 100 110 100 90 120 75 140 105 140")
    with pytest.warns(SkippedDataWarning, match=r"1 of 22 faces have non-finite points \(first: .*:5: 000003\.jpg"):
        assert train.main(train_argv(celeba, tmp_path / "runs", "data.skip_bad_images=true")) == 0
    assert "21 training images" in capsys.readouterr().out


# --- 4. points far outside their image ----------------------------------------------------------------------------


def test_points_outside_their_image_beyond_the_tolerance_are_refused_with_point_and_size(tmp_path):
    assert POINT_TOLERANCE == 0.25  # docs/workflow.md states it
    root = make_celeba(tmp_path)  # 178x218 images: x may lie in [-45, 222], y in [-55, 272]
    set_row(root, "000002.jpg", "-45 111 222 112 88 272 72 -55 105 154")
    assert len(load_records("mafl-train", root)) == 2  # on the tolerance: kept
    for values, point in (("-46 111 109 112 88 137 72 152 105 154", r"point 1 \(left eye\) at \(-46, 111\)"),
                          ("70 111 109 112 88 273 72 152 105 154", r"point 3 \(nose\) at \(88, 273\)"),
                          ("-500 -500 109 112 88 137 72 152 105 154", r"point 1 \(left eye\) at \(-500, -500\)")):
        set_row(root, "000002.jpg", values)
        with pytest.raises(UserError, match=r"list_landmarks_align_celeba\.txt:4: 000002\.jpg: " + point + r" lies "
                                            r"outside its 178x218 image .*000002\.jpg by more than 25% of its size; "
                                            r"1 of 2 faces have points that far out; expected \(x, y\) pixels of the "
                                            r"stored image: fix or delete those rows " + SKIP):
            load_records("mafl-train", root)
    with pytest.warns(SkippedDataWarning, match=r"skipping bad data: 1 of 2 faces have points outside their image "
                                                r"\(first: .*:4: 000002\.jpg: point 1 \(left eye\) at \(-500, -500\)"):
        records = load_records("mafl-train", root, skip_bad_images=True)
    assert [r.name for r in records] == ["000004.jpg"]


def test_five_points_at_one_place_are_a_placeholder_not_a_face(tmp_path):
    root = make_aflw(tmp_path)
    mat = root / "aflw_train_keypoints.mat"
    gt = scipy.io.loadmat(str(mat))["gt"]
    gt[2] = 0.0  # a zeroed row: five points at the image corner
    scipy.io.savemat(str(mat), {"gt": gt})
    with pytest.raises(UserError, match=r"aflw_train_keypoints\.mat face 3: imagetrain02_1\.jpg: all five points lie "
                                        r"within 1 pixel of \(0, 0\), a placeholder rather than a face; 1 of 3 faces "
                                        r"have all their points at one place; .*" + SKIP):
        load_records("aflw-train", root)
    with pytest.warns(SkippedDataWarning, match=r"1 of 3 faces have all their points at one place"):
        assert len(load_records("aflw-train", root, skip_bad_images=True)) == 2


def test_records_know_where_their_points_came_from(tmp_path):
    celeba = load_records("mafl-train", make_celeba(tmp_path / "c"))
    assert [r.source for r in celeba] == [f"{tmp_path / 'c' / LANDMARKS}:4", f"{tmp_path / 'c' / LANDMARKS}:6"]
    mtfl = load_records("mtfl-test", make_mtfl(tmp_path / "m", count=4, with_test=True))
    assert mtfl[0].source == f"{tmp_path / 'm' / 'testing.txt'}:1"
    aflw = load_records("aflw-train", make_aflw(tmp_path / "a"))
    assert aflw[2].source == f"{tmp_path / 'a' / 'aflw_train_keypoints.mat'} face 3"
    assert load_records("folder", tmp_path / "c" / "Img")[0].source == ""


def test_extraction_refuses_a_face_annotated_far_outside_its_image_or_skips_it(checkpoint, celeba, tmp_path, capsys):
    line = set_row(celeba, "000023.jpg", "-500 -500 108 111 88 136 72 152 105 152")  # a 1-pixel crop, 440 % NME
    out = tmp_path / "det"
    assert_one_line_error(extract(checkpoint, celeba, "mafl-test", out), capsys,
                          f"{celeba / LANDMARKS}:{line}: 000023.jpg: point 1 (left eye) at (-500, -500) lies outside "
                          f"its 178x218 image", "--skip-bad-images")
    assert not out.exists()
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 faces have points outside their image \(first: .*000023"):
        assert extract(checkpoint, celeba, "mafl-test", out, "--skip-bad-images") == 0
    assert list(load_detections(out / "mafl-test.npz").names) == ["000024.jpg"]


# --- 5. an empty (0-byte) image file ------------------------------------------------------------------------------


def test_an_empty_image_file_is_a_user_error_and_refused_at_load_time(tmp_path):
    root = make_celeba(tmp_path)
    image = root / IMAGES / "000004.jpg"
    dataset = build_train_dataset("mafl-train", root, image_size=32)
    eval_dataset = build_eval_dataset("mafl-train", root, image_size=32)
    image.write_bytes(b"")  # emptied after loading: found when read, as a UserError, not a cv2.error
    with pytest.raises(UserError, match=r"000004\.jpg: empty file \(0 bytes\); expected a whole jpg/png/bmp file"):
        read_image_rgb(image)
    with pytest.raises(UserError, match=r"000004\.jpg: empty file \(0 bytes\)"):
        dataset[1]
    with pytest.raises(UserError, match=r"000004\.jpg: empty file \(0 bytes\)"):
        eval_dataset[1]
    with pytest.raises(UserError, match=r"000004\.jpg: empty file \(0 bytes\); .*1 of 2 images do not decode " + SKIP):
        build_eval_dataset("mafl-train", root)  # emptied before loading: refused before any face is read
    with pytest.warns(SkippedDataWarning, match=r"skipping bad data: 1 of 2 images do not decode \(first: "
                                                r".*000004\.jpg: empty file \(0 bytes\)"):
        train_set = build_train_dataset("mafl-train", root, image_size=32, skip_bad_images=True)
    assert [r.name for r in train_set.records] == ["000002.jpg"]


def test_a_training_set_emptied_after_loading_skips_the_empty_file_when_asked(tmp_path):
    root = make_celeba(tmp_path)
    dataset = build_train_dataset("mafl-train", root, image_size=32, skip_bad_images=True)
    (root / IMAGES / "000002.jpg").write_bytes(b"")
    with pytest.warns(SkippedDataWarning, match=r"000002\.jpg: empty file \(0 bytes\)"):
        item = dataset[0]
    assert item["name"] == "000004.jpg" and dataset.num_skipped == 1


def test_training_with_an_empty_image_stops_before_the_run_folder(celeba, tmp_path, capsys):
    (celeba / IMAGES / "000009.jpg").write_bytes(b"")
    out = tmp_path / "runs"
    assert_one_line_error(train.main(train_argv(celeba, out)), capsys,
                          "000009.jpg: empty file (0 bytes)", "1 of 22 images do not decode", "--skip-bad-images")
    assert not out.exists()


@pytest.mark.slow
def test_training_skips_and_counts_an_empty_image_when_asked(celeba, tmp_path, capsys):
    (celeba / IMAGES / "000009.jpg").write_bytes(b"")
    with pytest.warns(SkippedDataWarning, match=r"1 of 22 images do not decode \(first: .*000009\.jpg: empty file"):
        assert train.main(train_argv(celeba, tmp_path / "runs", "data.skip_bad_images=true")) == 0
    assert "21 training images" in capsys.readouterr().out


@pytest.fixture
def photos(synthetic_root, tmp_path) -> Path:
    """A folder of three face images, 000002.jpg emptied as by an interrupted copy."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        shutil.copy(synthetic_root / IMAGES / name, folder)
    (folder / "000002.jpg").write_bytes(b"")
    return folder


def test_extraction_refuses_an_empty_image_or_skips_and_counts_it(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "det"
    assert_one_line_error(extract(checkpoint, photos, "folder", out), capsys,
                          f"{photos / '000002.jpg'}: empty file (0 bytes)", "--skip-bad-images")
    assert not out.exists()
    with pytest.warns(SkippedDataWarning, match=r"1 of 3 images do not decode \(first: .*000002\.jpg: empty file"):
        assert extract(checkpoint, photos, "folder", out, "--skip-bad-images") == 0
    assert list(load_detections(out / "folder.npz").names) == ["000001.jpg", "000003.jpg"]


def test_detect_reports_an_empty_image_in_one_line_or_skips_it(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "detect"
    rc = detect.main(["--checkpoint", str(checkpoint), str(photos), "--out", str(out), "--quiet"])
    assert_one_line_error(rc, capsys, f"{photos / '000002.jpg'}: empty file (0 bytes)")
    with pytest.warns(SkippedDataWarning, match=r"skipped 1 of 3 images that do not decode \(first: .*000002\.jpg\)"):
        rc = detect.main(["--checkpoint", str(checkpoint), str(photos), "--out", str(out), "--quiet",
                          "--skip-bad-images"])
    rerun = out.with_name("detect-2")  # the failed run's folder is kept; the rerun goes to the next free one
    assert rc == 0 and len((rerun / "landmarks.csv").read_text().splitlines()) == 1 + 2 * 10


# --- 6. tiny images -----------------------------------------------------------------------------------------------


def test_images_below_the_minimum_side_are_warned_about_once_or_skipped(tmp_path):
    assert MIN_IMAGE_SIDE == 16  # docs/workflow.md states it
    for name, (width, height) in {"big.png": (40, 30), "edge.png": (16, 16), "thin.png": (15, 40),
                                  "tiny.png": (1, 1)}.items():
        write_image(tmp_path / name, width, height)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records("folder", tmp_path)
    assert [r.name for r in records] == ["big.png", "edge.png", "thin.png", "tiny.png"]
    assert [(w.category, str(w.message).partition("): ")[0]) for w in caught] == [
        (SmallImageWarning, f"2 of 4 images are smaller than 16 pixels on a side (first: {tmp_path / 'thin.png'}, "
                            f"15x40")]
    with pytest.warns(SkippedDataWarning, match=r"skipping bad data: 2 of 4 images are smaller than 16 pixels on a "
                                                r"side \(first: .*thin\.png, 15x40\)"):
        records = load_records("folder", tmp_path, skip_bad_images=True)
    assert [r.name for r in records] == ["big.png", "edge.png"]


def test_a_tiny_annotated_image_is_warned_about_not_taken_for_a_bad_annotation(tmp_path):
    root = make_celeba(tmp_path)
    write_image(root / IMAGES / "000004.jpg", 1, 1)
    with pytest.warns(SmallImageWarning, match=r"1 of 2 images are smaller than 16 pixels on a side \(first: "
                                               r".*000004\.jpg, 1x1\)"):
        assert len(load_records("mafl-train", root)) == 2
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 images are smaller"):
        assert [r.name for r in load_records("mafl-train", root, skip_bad_images=True)] == ["000002.jpg"]


# --- 7. symlinked folders in a plain image folder -----------------------------------------------------------------


def test_a_plain_folder_follows_symlinked_subfolders_once_and_survives_loops(tmp_path):
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for path in (root / "b.jpg", root / "z" / "c.jpg", elsewhere / "a.jpg", elsewhere / "deep" / "d.jpg"):
        write_image(path, 40, 30)
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "z" / "loop").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (elsewhere / "deep" / "up").symlink_to(elsewhere, target_is_directory=True)  # a loop inside the linked folder
    (root / "same").symlink_to(elsewhere / "deep", target_is_directory=True)  # reached again through "linked"
    records = load_records("folder", root)
    assert [r.name for r in records] == ["b.jpg", "linked/a.jpg", "linked/deep/d.jpg", "z/c.jpg"]
    assert all(r.path == root / r.name for r in records)


def test_a_broken_image_link_in_a_plain_folder_is_refused_or_skipped(tmp_path):
    write_image(tmp_path / "photos" / "a.jpg", 40, 30)
    (tmp_path / "photos" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(UserError, match=r"photos: 1 of 2 names are broken links or folders that cannot be read "
                                        r"\(first: gone\.jpg\); .*" + SKIP):
        load_records("folder", tmp_path / "photos")
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 names are broken links"):
        assert [r.name for r in load_records("folder", tmp_path / "photos", skip_bad_images=True)] == ["a.jpg"]


# --- 8. the message names the option of the script in use ---------------------------------------------------------


def test_a_missing_image_names_both_spellings_of_the_skip_option(checkpoint, celeba, tmp_path, capsys):
    assert SKIP_HINT == "--skip-bad-images, or data.skip_bad_images=true in train.py, skips them"
    (celeba / IMAGES / "000024.jpg").unlink()
    out = tmp_path / "det"
    line = assert_one_line_error(extract(checkpoint, celeba, "mafl-test", out), capsys,
                                 "testing.txt: 1 of 2 names have no image", f"({SKIP_HINT})")
    assert "set skip_bad_images" not in line and not out.exists()
    (celeba / IMAGES / "000010.jpg").unlink()
    assert_one_line_error(train.main(train_argv(celeba, tmp_path / "runs")), capsys,
                          "list_landmarks_align_celeba.txt: 1 of 22 names have no image", f"({SKIP_HINT})")
    assert not (tmp_path / "runs").exists()


# --- other bad annotation input -----------------------------------------------------------------------------------


def test_empty_or_blank_lists_are_refused_naming_the_file(tmp_path):
    root = make_celeba(tmp_path / "c")
    for text in ("", "\n  \n\r\n"):
        (root / "MAFL" / "testing.txt").write_text(text)
        for split in ("mafl-test", "celeba"):  # an empty test list would let the celeba split train on test faces
            with pytest.raises(UserError, match=r"MAFL/testing\.txt: no image names \(the file is empty or blank\); "
                                                r"expected one image name per line"):
                load_records(split, root)
    aflw = make_aflw(tmp_path / "a")
    (aflw / "aflw_train_images.txt").write_text(" \n")
    with pytest.raises(UserError, match=r"aflw_train_images\.txt: no image names"):
        load_records("aflw-train", aflw)
    mtfl = make_mtfl(tmp_path / "m", count=3)
    (mtfl / "training.txt").write_bytes(b" \r\n")
    with pytest.raises(UserError, match=r"training\.txt: no annotation lines \(the file is empty or blank\)"):
        load_records("mtfl-train", mtfl)


def test_malformed_annotation_files_are_refused_in_one_line(tmp_path):
    mtfl = make_mtfl(tmp_path / "m", count=5)
    lines = (mtfl / "training.txt").read_bytes().decode().split("\r\n")
    lines[0] = lines[0].replace(" 1 2 2 3", " 1 x 2 3")
    (mtfl / "training.txt").write_bytes("\r\n".join(lines).encode())
    with pytest.raises(UserError, match=r"training\.txt:1: expected 4 numbers \(gender smile glasses pose\) after the "
                                        r"points, got '1 x 2 3'"):
        load_records("mtfl-train", mtfl)
    root = make_celeba(tmp_path / "c")
    (root / "MAFL" / "training.txt").write_bytes(b"\xff\xd8\xff\xe0 a jpg saved under the list's name")
    with pytest.raises(UserError, match=r"MAFL/training\.txt: not a text file \(byte 0 is not UTF-8\); expected a list "
                                        r"of image names"):
        load_records("mafl-train", root)
    (root / "MAFL" / "training.txt").write_bytes("\ufeff000002.jpg\r\n000004.jpg".encode())  # a BOM, as Notepad writes
    assert [r.name for r in load_records("mafl-train", root)] == ["000002.jpg", "000004.jpg"]
    aflw = make_aflw(tmp_path / "a")
    cells = np.empty(3, dtype=object)
    cells[:] = [np.zeros((5, 2)), np.zeros((4, 2)), np.zeros((5, 2))]
    scipy.io.savemat(str(aflw / "aflw_train_keypoints.mat"), {"gt": cells})  # a cell array, one face short a point
    with pytest.raises(UserError, match=r"aflw_train_keypoints\.mat: 'gt' is not a numeric array"):
        load_records("aflw-train", aflw)


def test_the_real_celeba_sample_passes_every_check():

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records("celeba", shared("celeba"), skip_bad_images=True)
    assert len(records) == 43
    assert [str(w.message).count("286 of 329 names have no image") for w in caught] == [1]  # and nothing else


@pytest.mark.slow
def test_the_real_mtfl_faces_pass_every_check():

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_records("mtfl-train", shared("MTFL")) + load_records("mtfl-val", shared("MTFL"))) == 10_000
