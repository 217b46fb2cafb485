"""Tests of detect.py: the crop/uncrop geometry by hand, end to end on a tiny trained model, user errors."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
import train
from conftest import tiny_train_overrides
from datasets.transforms import points_to_crop
from detect import crop_box, crop_for_model, crop_to_image_xy, main, output_stems

REPO = Path(__file__).resolve().parents[1]
PAD_LEFT, PAD_TOP = 30, 20  # where the padded copy of a face puts its top-left pixel
K = 10  # configs/synthetic.yaml


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A tiny model (32 px crops) trained for 2 steps: cheap, and its points are finite and deterministic."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("detect_run")
    argv = ["--config", str(REPO / "configs" / "synthetic.yaml"), *tiny_train_overrides(synthetic_root, out, 2),
            "validation.enabled=false"]
    assert train.main(argv) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir / "last.pt"


@pytest.fixture(scope="module")
def images(synthetic_root, tmp_path_factory) -> Path:
    """A folder: 000001.jpg, 000002.jpg, sub/000003.jpg (178 x 218), wide.png (000001 padded to 258 x 248)."""
    folder = tmp_path_factory.mktemp("images")
    source = synthetic_root / "Img" / "img_align_celeba"
    (folder / "sub").mkdir()
    shutil.copy(source / "000001.jpg", folder)
    shutil.copy(source / "000002.jpg", folder)
    shutil.copy(source / "000003.jpg", folder / "sub")
    face = cv2.imread(str(folder / "000001.jpg"))  # (218, 178, 3)
    padded = cv2.copyMakeBorder(face, PAD_TOP, 10, PAD_LEFT, 50, cv2.BORDER_CONSTANT, value=(40, 80, 120))
    cv2.imwrite(str(folder / "wide.png"), padded)  # lossless, so its face pixels equal 000001.jpg's decode
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def points_of(rows: list[dict], image: str) -> np.ndarray:
    """(K, 2) points of one image from landmarks.csv rows, in landmark order."""
    mine = [r for r in rows if r["image"] == image]
    assert [int(r["landmark"]) for r in mine] == list(range(len(mine)))
    return np.array([[float(r["x"]), float(r["y"])] for r in mine])


# --- geometry ----------------------------------------------------------------------------------


def test_centre_crop_of_a_wide_image_maps_back_by_hand():
    box = crop_box((200, 100), "centre")
    assert box == (50, 0, 150, 100)
    # x = 50 + (31.5 + 0.5) * 100 / 64 - 0.5 = 99.5 (the image centre); (0, 0) -> 50 + 0.78125 - 0.5
    mapped = crop_to_image_xy(np.array([[31.5, 31.5], [0.0, 0.0], [63.0, 63.0]]), box, 64)
    np.testing.assert_allclose(mapped, [[99.5, 49.5], [50.28125, 0.28125], [148.71875, 98.71875]], rtol=0, atol=1e-12)


def test_crop_boxes_of_each_mode():
    assert crop_box((100, 200), "centre") == (0, 50, 100, 150)
    assert crop_box((101, 100), "centre") == (0, 0, 100, 100)  # odd excess: the extra column is on the right
    assert crop_box((178, 218), "full") == (0, 0, 178, 218)
    assert crop_box((178, 218), "box", (10, 20, 110, 120)) == (10, 20, 110, 120)


def test_uncrop_inverts_points_to_crop_for_a_non_square_box():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 90, size=(7, 2))  # (7, 2) image pixels
    box = (13, 7, 113, 57)  # 100 x 50: x and y scale differently
    crop_points = points_to_crop(points, box, 32).astype(np.float64)
    np.testing.assert_allclose(crop_to_image_xy(crop_points, box, 32), points, atol=1e-4)


@pytest.mark.parametrize("box", [(40, 90, 240, 190), (114, 162, 133, 181)])  # 200x100 shrinks; 19x19 grows
def test_crop_for_model_puts_content_where_the_mapping_says(box):
    """A blob centred at a known image pixel lands, after crop and resize, where crop_to_image_xy maps it from."""
    yy, xx = np.mgrid[0:300, 0:300]
    centre = np.array([123.0, 171.0])  # (x, y)
    blob = 255 * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 5.0**2))
    image = np.repeat(blob[..., None], 3, axis=2).round().astype(np.uint8)  # (300, 300, 3)
    crop = crop_for_model(image, box, 32)[..., 0].astype(np.float64)  # (32, 32)
    cy, cx = np.mgrid[0:32, 0:32]
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()  # (x, y) crop pixels
    # Dropping the half-pixel terms would be off by 0.19 px (19x19 box) to 2.6 px (200x100 box).
    np.testing.assert_allclose(crop_to_image_xy(centroid, box, 32), centre, atol=0.05)


def test_output_stems_are_distinct():
    paths = [Path("a/1.jpg"), Path("b/1.jpg"), Path("b/2.png"), Path("b/x.png"), Path("b/x.jpg")]
    assert output_stems(paths) == ["a__1.jpg", "b__1.jpg", "2", "b__x.png", "b__x.jpg"]


# --- end to end --------------------------------------------------------------------------------


def test_full_crop_writes_k_rows_per_image_and_original_size_pictures(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(images), "--crop", "full", "--out", str(out),
                 "--batch-size", "3", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = read_csv(out / "landmarks.csv")
    assert list(rows[0]) == ["image", "landmark", "x", "y"]
    names = ["000001.jpg", "000002.jpg", "sub/000003.jpg", "wide.png"]  # sorted, recursive
    assert [r["image"] for r in rows[::K]] == [str(images / n) for n in names] and len(rows) == K * len(names)
    for name, stem in zip(names, ["000001", "000002", "000003", "wide"]):
        h, w = cv2.imread(str(images / name)).shape[:2]
        points = points_of(rows, str(images / name))  # (K, 2)
        assert np.isfinite(points).all()
        assert (points >= -0.5).all() and (points[:, 0] <= w - 0.5).all() and (points[:, 1] <= h - 0.5).all()
        assert cv2.imread(str(out / f"{stem}_landmarks.png")).shape == (h, w, 3)


def test_a_box_around_a_padded_face_gives_the_same_points_shifted(checkpoint, images, tmp_path):
    """wide.png is 000001.jpg pasted at (30, 20): its box crop is the same crop, so the points move by (30, 20)."""
    assert main(["--checkpoint", str(checkpoint), str(images / "000001.jpg"), "--crop", "full",
                 "--out", str(tmp_path / "full"), "--quiet"]) == 0
    box = f"{PAD_LEFT},{PAD_TOP},{PAD_LEFT + 178},{PAD_TOP + 218}"
    assert main(["--checkpoint", str(checkpoint), str(images / "wide.png"), "--box", box,
                 "--out", str(tmp_path / "box"), "--quiet"]) == 0
    face = points_of(read_csv(tmp_path / "full" / "landmarks.csv"), str(images / "000001.jpg"))
    padded = points_of(read_csv(tmp_path / "box" / "landmarks.csv"), str(images / "wide.png"))
    np.testing.assert_allclose(padded, face + [PAD_LEFT, PAD_TOP], atol=2e-3)  # CSV keeps 3 decimals


# --- user errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_checkpoint", r"nowhere\.pt: no such checkpoint file or run folder"),
        ("no_images", r"empty: no images in this folder; expected \.jpg/\.jpeg/\.png/\.bmp files"),
        ("no_path", r"missing\.jpg: no such image file or folder"),
        ("unreadable", r"broken\.jpg: image does not decode"),
        ("box_syntax", r"--box '10,10,50': expected four integers x0,y0,x1,y1"),
        ("box_order", r"--box '50,10,40,60': expected 0 <= x0 < x1 and 0 <= y0 < y1"),
        ("box_outside", r"000001\.jpg: --box 0,0,300,100 reaches outside the 178x218 image"),
        ("box_without_box", r"--crop box needs --box x0,y0,x1,y1"),
        ("box_with_full", r"--box is only used with --crop box, not --crop full"),
        ("batch_size", r"--batch-size 0: expected >= 1"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_code_2(checkpoint, images, tmp_path, capsys, case, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    inputs = {"no_images": [tmp_path / "empty"], "no_path": [tmp_path / "missing.jpg"],
              "unreadable": [images / "000001.jpg", tmp_path / "broken.jpg"]}.get(case, [images / "000001.jpg"])
    options = {"no_checkpoint": ["--checkpoint", str(tmp_path / "nowhere.pt")],
               "box_syntax": ["--box", "10,10,50"], "box_order": ["--box", "50,10,40,60"],
               "box_outside": ["--box", "0,0,300,100"], "box_without_box": ["--crop", "box"],
               "box_with_full": ["--crop", "full", "--box", "0,0,10,10"], "batch_size": ["--batch-size", "0"]}
    argv = ["--checkpoint", str(checkpoint), *options.get(case, []), *map(str, inputs),
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err


def test_help_explains_the_crop_modes(capsys):
    with pytest.raises(SystemExit):
        detect.main(["--help"])
    text = capsys.readouterr().out
    assert "--crop {centre,full,box}" in text and "x_orig = x0 + (x_crop + 0.5) * w / S - 0.5" in text
