"""Loaders in each original layout: tiny written fixtures, bad-input messages, real sample data."""

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datasets import (SkippedDataWarning, build_eval_dataset,
                      build_train_dataset, load_records)
from datasets.mtfl import validation_indices
from datasets.records import jpeg_is_complete, read_image_rgb, read_name_list
from utils.dataset_registry import EVAL_SPLITS, TRAINING_SETS
from helpers import celeba_points, make_aflw, make_celeba, make_mtfl, shared, write_image
from utils.errors import UserError

# ---------------------------------------------------------------------------- layouts


def test_celeba_and_mafl_splits(tmp_path):
    root = make_celeba(tmp_path)
    celeba = load_records("celeba", root)
    assert [r.name for r in celeba] == ["000002.jpg", "000004.jpg", "031524.jpg"]  # minus test
    np.testing.assert_array_equal(celeba[2].points_xy, np.reshape(celeba_points(2), (5, 2)))
    assert celeba[0].path == root / "Img" / "img_align_celeba" / "000002.jpg"
    assert [r.name for r in load_records("mafl-train", root)] == ["000002.jpg", "000004.jpg"]
    assert [r.name for r in load_records("mafl-train", root, exclude_reference_three=False)] == [
        "000002.jpg", "031524.jpg", "000004.jpg"]
    test = load_records("mafl-test", root)
    assert [r.name for r in test] == ["000001.jpg"]
    assert test[0].points_xy.dtype == np.float32 and test[0].points_xy.shape == (5, 2)
    assert test[0].points_xy[0].tolist() == [69.0, 111.0]


def test_celeba_prefers_the_hq_image_folder(tmp_path):
    root = make_celeba(tmp_path, image_dir="img_align_celeba_hq")
    assert load_records("mafl-test", root)[0].path.parent.name == "img_align_celeba_hq"


def test_aflw_flips_yx_to_xy(tmp_path):
    root = make_aflw(tmp_path)
    train = load_records("aflw-train", root)
    assert [r.name for r in train] == ["imagetrain00_1.jpg", "imagetrain01_1.jpg",
                                       "imagetrain02_1.jpg"]
    np.testing.assert_array_equal(train[1].points_xy[:, 0], [20, 30, 40, 50, 60])  # x
    np.testing.assert_array_equal(train[1].points_xy[:, 1], [51, 52, 53, 54, 55])  # y
    assert len(load_records("aflw-test", root)) == 1


def test_mtfl_parses_windows_lines_and_splits_90_10(tmp_path):
    root = make_mtfl(tmp_path, count=20, with_test=True)
    train, val = load_records("mtfl-train", root), load_records("mtfl-val", root)
    assert (len(train), len(val)) == (18, 2)
    names = {r.name for r in train} | {r.name for r in val}
    assert len(names) == 20 and all("\\" not in n for n in names)
    first = next(r for r in train + val if r.name == "lfw_5590/face_000.jpg")
    np.testing.assert_allclose(first.points_xy, [[30, 40], [60, 41], [45, 55], [33, 70], [58, 71]])
    assert first.path == root / "lfw_5590" / "face_000.jpg"
    test = load_records("mtfl-test", root)
    assert [r.name for r in test] == ["AFLW/t.jpg"]


def test_mtfl_validation_is_a_fixed_permutation_not_the_tail():
    names = [f"lfw_5590/{i}.jpg" for i in range(500)] + [f"net_7876/{i}.jpg" for i in range(500)]
    val = validation_indices(names)
    assert len(val) == 100 and val == validation_indices(list(names))
    from_lfw = sum(i < 500 for i in val)
    assert 30 < from_lfw < 70  # both halves represented, unlike a head or tail slice
    assert validation_indices(names[::-1]) == {999 - i for i in val}  # order-independent


def test_folder_lists_images_recursively_sorted(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.jpeg", "sub/d.bmp", ".hidden/e.jpg"):
        write_image(tmp_path / name, 40, 30)
    (tmp_path / "notes.txt").write_text("x")
    records = load_records("folder", tmp_path)
    assert [r.name for r in records] == ["a.JPG", "b.png", "sub/c.jpeg", "sub/d.bmp"]
    assert all(r.points_xy is None for r in records)


def test_eval_dataset_items_and_limit(tmp_path):
    root = make_celeba(tmp_path)
    dataset = build_eval_dataset("celeba", root, image_size=64, limit=2)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert abs(float(item["image"].mean()) - 128 / 255) < 1e-6
    assert item["points"].shape == (5, 2) and item["index"] == 1 and item["name"] == "000004.jpg"
    # Points of image 3 span x 72..111, y 111..155: delta 41.5, margin 29, box (43, 82, 140, 184).
    expected_x = (72 - 43 + 0.5) * 64 / 97 - 0.5
    assert abs(float(item["points"][3, 0]) - expected_x) < 1e-4
    folder_item = build_eval_dataset("folder", root / "Img", image_size=32)[0]
    assert torch.isnan(folder_item["points"]).all()


def test_train_dataset_kinds(tmp_path):
    celeba = make_celeba(tmp_path / "celeba")
    assert len(build_train_dataset("celeba", celeba)) == 3
    assert len(build_train_dataset("synthetic", celeba)) == 3
    assert len(build_train_dataset("mafl-train", celeba)) == 2
    assert len(build_train_dataset("aflw", make_aflw(tmp_path / "aflw"))) == 3
    assert len(build_train_dataset("mtfl", make_mtfl(tmp_path / "mtfl"))) == 18
    folder = build_train_dataset("folder", celeba / "Img", image_size=32, angle=0.0)
    item = folder[0]
    assert item["x"].shape == (3, 32, 32) and torch.isnan(item["points_x"]).all()
    assert set(TRAINING_SETS) == {"celeba", "synthetic", "mafl-train", "aflw", "mtfl", "folder"}
    assert len(EVAL_SPLITS) == 9


# ---------------------------------------------------------------------------- bad input


def test_missing_root_and_files(tmp_path):
    with pytest.raises(UserError, match=r"nowhere: directory not found; expected the CelebA root"):
        load_records("celeba", tmp_path / "nowhere")
    root = make_celeba(tmp_path / "c")
    (root / "MAFL" / "testing.txt").unlink()
    with pytest.raises(UserError, match=r"testing\.txt: file not found"):
        load_records("mafl-test", root)
    with pytest.raises(UserError, match=r"training\.txt: file not found; expected an MTFL"):
        load_records("mtfl-train", tmp_path)
    with pytest.raises(UserError, match=r"unknown data split 'mafl'; expected one of"):
        load_records("mafl", tmp_path)
    with pytest.raises(UserError, match=r"unknown training data set 'imagenet'"):
        build_train_dataset("imagenet", tmp_path)


def test_landmark_line_with_wrong_field_count_names_file_and_line(tmp_path):
    root = make_celeba(tmp_path)
    path = root / "Anno" / "list_landmarks_align_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = "000002.jpg 1 2 3"
    path.write_text("\n".join(lines))
    with pytest.raises(UserError, match=r"list_landmarks_align_celeba\.txt:5: expected 11 fields"
                                        r" \(name x1 y1 \.\.\. x5 y5\), got 4"):
        load_records("celeba", root)
    lines[4] = "000002.jpg 1 2 3 4 5 6 7 8 9 ten"
    path.write_text("\n".join(lines))
    with pytest.raises(UserError, match=r":5: expected 10 numbers after the name"):
        load_records("celeba", root)


def test_landmark_file_shorter_than_its_count_line(tmp_path):
    root = make_celeba(tmp_path)
    path = root / "Anno" / "list_landmarks_align_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]))
    with pytest.raises(UserError, match=r":1: the count line says 4 rows but the file has 3"):
        load_records("celeba", root)


def test_mtfl_line_with_wrong_field_count(tmp_path):
    root = make_mtfl(tmp_path, count=5)
    lines = (root / "training.txt").read_bytes().decode().split("\r\n")
    lines[2] = " lfw_5590\\face_002.jpg 1 2 3"
    (root / "training.txt").write_bytes("\r\n".join(lines).encode())
    with pytest.raises(UserError, match=r"training\.txt:3: expected 15 fields"):
        load_records("mtfl-train", root)


def test_listed_name_without_image_raises_or_is_skipped_with_a_count(tmp_path):
    root = make_celeba(tmp_path)
    (root / "Img" / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(UserError, match=r"training\.txt: 1 of 2 names have no image under "
                                        r".*img_align_celeba \(first: 000004\.jpg\).*"
                                        r"skip_bad_images"):
        load_records("mafl-train", root)
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 names have no image"):
        records = load_records("mafl-train", root, skip_bad_images=True)
    assert [r.name for r in records] == ["000002.jpg"]
    with pytest.raises(UserError, match=r"list_landmarks_align_celeba\.txt: 1 of 3 names"):
        build_train_dataset("celeba", root)


def test_listed_name_without_landmark_row(tmp_path):
    root = make_celeba(tmp_path, train=("000002.jpg", "000009.jpg"))
    with pytest.raises(UserError, match=r"1 of 2 names have no row in .*list_landmarks"):
        load_records("mafl-train", root)


def test_image_that_does_not_decode(tmp_path):
    root = make_celeba(tmp_path)
    dataset = build_eval_dataset("mafl-train", root)
    (root / "Img" / "img_align_celeba" / "000004.jpg").write_bytes(b"not an image")  # broken after loading
    with pytest.raises(UserError, match=r"000004\.jpg: image does not decode"):
        dataset[1]
    with pytest.raises(UserError, match=r"000004\.jpg: image does not decode.*; 1 of 2 images do not decode"):
        build_eval_dataset("mafl-train", root)  # broken before: its header does not read, refused at load time
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 images do not decode .*000004\.jpg"):
        dataset = build_eval_dataset("mafl-train", root, skip_bad_images=True)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["000002.jpg"]


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_a_jpeg_cut_in_half_is_refused_naming_it_and_skipped_when_asked(tmp_path):
    root = make_celeba(tmp_path)
    image = root / "Img" / "img_align_celeba" / "000004.jpg"
    assert cv2.imread(str(image)) is not None
    cut_in_half(image)
    assert cv2.imread(str(image)) is not None  # OpenCV alone decodes it, its lower half grey
    with pytest.raises(UserError, match=r"000004\.jpg: truncated JPEG"):
        read_image_rgb(image)
    with pytest.raises(UserError, match=r"000004\.jpg: truncated JPEG"):
        build_eval_dataset("mafl-train", root)[1]
    with pytest.warns(SkippedDataWarning, match=r"1 of 2 images do not decode .*000004\.jpg"):
        dataset = build_eval_dataset("mafl-train", root, skip_bad_images=True)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["000002.jpg"]


@pytest.mark.parametrize("suffix, params", [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                            (".png", []), (".bmp", [])])
def test_whole_files_decode_to_opencv_pixels_and_cut_ones_are_refused(tmp_path, suffix, params):
    pixels = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    path = tmp_path / f"face{suffix}"
    cv2.imwrite(str(path), pixels, params)
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION),
                            cv2.COLOR_BGR2RGB)
    assert np.array_equal(read_image_rgb(path), expected)
    cut_in_half(path)
    with pytest.raises(UserError, match=r"face\.(jpg|png|bmp): (truncated JPEG|image does not decode)"):
        read_image_rgb(path)


def test_jpeg_completeness_skips_an_embedded_thumbnail_and_allows_trailing_bytes():
    ok, thumb = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    ok, main = cv2.imencode(".jpg", np.full((16, 16, 3), 200, np.uint8))
    thumb, main = thumb.tobytes(), main.tobytes()
    app1 = b"Exif\x00\x00" + thumb  # a thumbnail with its own end-of-image marker
    with_thumbnail = main[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + main[2:]
    assert jpeg_is_complete(with_thumbnail) and jpeg_is_complete(main + b"\x00" * 10)
    assert not jpeg_is_complete(with_thumbnail[:-2]) and not jpeg_is_complete(with_thumbnail[:len(app1)])


def test_mat_without_gt_and_mismatched_counts(tmp_path):
    root = make_aflw(tmp_path / "a", keypoints=False)
    with pytest.raises(UserError, match=r"aflw_train_keypoints\.mat: no 'gt' variable"):
        load_records("aflw-train", root)
    root = make_aflw(tmp_path / "b")
    (root / "aflw_train_images.txt").write_text("imagetrain00_1.jpg\nimagetrain01_1.jpg")
    with pytest.raises(UserError, match=r"'gt' has 3 faces but .* lists 2 images"):
        load_records("aflw-train", root)
    (root / "aflw_test_keypoints.mat").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"aflw_test_keypoints\.mat: not a readable MATLAB"):
        load_records("aflw-test", root)


def test_empty_split(tmp_path):
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(UserError, match=r"split 'folder' has no usable images"):
        load_records("folder", tmp_path / "empty")
    root = make_celeba(tmp_path / "c")
    (root / "Img" / "img_align_celeba" / "000001.jpg").unlink()  # the one test image
    with pytest.warns(SkippedDataWarning), \
            pytest.raises(UserError, match=r"testing\.txt: split 'mafl-test' has no usable images"):
        build_eval_dataset("mafl-test", root, skip_bad_images=True)
    root = make_celeba(tmp_path / "d", test=())
    with pytest.raises(UserError, match=r"testing\.txt: no image names \(the file is empty or blank\)"):
        build_eval_dataset("mafl-test", root)


def test_out_of_range_options(tmp_path):
    root = make_celeba(tmp_path)
    with pytest.raises(UserError, match=r"image_size=0 is out of range; expected >= 1"):
        build_eval_dataset("celeba", root, image_size=0)
    with pytest.raises(UserError, match=r"angle=-1.0 is out of range"):
        build_train_dataset("celeba", root, angle=-1.0)


# ---------------------------------------------------------------------------- real sample data


def jpeg_size_wh(path: Path) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header, without decoding the image."""
    data = path.read_bytes()
    offset = 2
    while offset < len(data):
        marker, length = data[offset + 1], int.from_bytes(data[offset + 2:offset + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[offset + 5:offset + 7], "big")
            return int.from_bytes(data[offset + 7:offset + 9], "big"), height
        offset += 2 + length
    raise ValueError(f"{path}: no JPEG frame header")


@pytest.mark.slow
def test_real_mtfl_training_faces_have_points_inside_their_images():
    root = shared("MTFL")
    train, val = load_records("mtfl-train", root), load_records("mtfl-val", root)
    assert (len(train), len(val)) == (9000, 1000)
    assert len({r.name for r in train} | {r.name for r in val}) == 10_000
    points = np.stack([r.points_xy for r in train + val])  # (10000, 5, 2)
    sizes = np.array([jpeg_size_wh(r.path) for r in train + val], np.float32)  # (10000, 2)
    assert points.min() >= 0
    assert np.all(points <= sizes[:, None, :] - 1)
    decoded = cv2.imread(str(train[0].path))
    assert tuple(sizes[0]) == (decoded.shape[1], decoded.shape[0])
    # The eyes lie left-to-right and above the mouth corners on these upright faces.
    assert np.mean(points[:, 0, 0] < points[:, 1, 0]) > 0.99
    assert np.mean(points[:, 2, 1] < points[:, 3, 1]) > 0.95


def test_real_celeba_sample():
    root = shared("celeba")
    assert len(read_name_list(root / "MAFL" / "training.txt")) == 19_000
    assert len(read_name_list(root / "MAFL" / "testing.txt")) == 1_000
    with pytest.raises(UserError, match=r"286 of 329 names have no image .*first: 000033\.jpg"):
        load_records("celeba", root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records("celeba", root, skip_bad_images=True)
    assert len(records) == 43 and records[0].name == "000001.jpg"
    assert [str(w.message).count("286 of 329") for w in caught] == [1]
    np.testing.assert_array_equal(records[0].points_xy,
                                  [[69, 109], [106, 113], [77, 142], [73, 152], [108, 154]])
    with pytest.warns(SkippedDataWarning):
        dataset = build_eval_dataset("celeba", root, skip_bad_images=True, limit=3)
    points = torch.stack([dataset[i]["points"] for i in range(3)])
    assert points.min() > 0 and points.max() < 127
