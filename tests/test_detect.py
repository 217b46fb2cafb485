"""Tests of detect.py: the crop/uncrop geometry by hand, end to end on a tiny trained model, user errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import inference.photo
import detect
from inference.crops import BoxToCrop, crop_for_model, face_crop
from datasets.synthetic import render_face
from datasets.transforms import crop_to_image_xy, points_to_crop
from detect import crop_box, main, picture_names
from model import load_model
from inference.points import detect_crops
from utils.checkpoint import file_sha256
from utils.errors import UserError
from utils.landmarks import LANDMARK_NAMES
from utils.metrics import RidgeModel

PAD_LEFT, PAD_TOP = 30, 20  # where the padded copy of a face puts its top-left pixel
K = 10  # configs/synthetic.yaml
HEADER = "image,face,x0,y0,x1,y1,landmark,x,y"
# The face-crop map and named points written into `face_checkpoint`, known by hand.
MAP = BoxToCrop(shift_x=0.0, shift_y=0.1, width_scale=1.2, height_scale=1.2)
WORK_SIDE = 60
NAMED_128 = np.array([[31.5, 47.5], [95.5, 47.5], [63.5, 79.5], [39.5, 103.5], [87.5, 103.5]])  # 128-px crop


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    """conftest's tiny model (32 px crops, 2 steps): cheap, and its points are finite and deterministic."""
    return tiny_run / "last.pt"


@pytest.fixture(scope="module")
def face_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """The tiny model with a known face-crop map (MAP, WORK_SIDE) and a named-point regressor that ignores the
    detections (zero weights): its named points are NAMED_128 in every crop, so they are known by hand."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["face_crop"] = {"box_to_crop": MAP.to_dict(), "work_side": WORK_SIDE, "cascade": "x", "fitted_on": "by hand"}
    regressor = RidgeModel(np.zeros((10, 2 * K)), np.zeros(2 * K), (NAMED_128 / 128 - 0.5).reshape(10))
    ckpt["named_points"] = {"regressor": regressor.to_dict(), "names": list(LANDMARK_NAMES), "reg": 0.0,
                            "fitted_on": "by hand"}
    path = tmp_path_factory.mktemp("face_ckpt") / "faces.pt"
    torch.save(ckpt, path)
    return path


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


def synthetic_face_bgr(index: int) -> np.ndarray:
    """A synthetic face the cascade finds (seeds [0, 1], [0, 3] and [0, 6] are found), BGR."""
    return render_face(np.random.default_rng([0, index]))[0]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def points_of(rows: list[dict], image: str, face: int = 0) -> np.ndarray:
    """(K, 2) detected points of one face from landmarks.csv rows, in landmark order."""
    mine = [r for r in rows if r["image"] == image and r["face"] == str(face) and r["landmark"].isdigit()]
    assert [int(r["landmark"]) for r in mine] == list(range(len(mine)))
    return np.array([[float(r["x"]), float(r["y"])] for r in mine])


def named_of(rows: list[dict], image: str, face: int = 0) -> np.ndarray:
    """(5, 2) named points of one face, in LANDMARK_NAMES order."""
    mine = {r["landmark"]: (float(r["x"]), float(r["y"])) for r in rows if r["image"] == image
            and r["face"] == str(face) and not r["landmark"].isdigit()}
    assert list(mine) == list(LANDMARK_NAMES)
    return np.array([mine[name] for name in LANDMARK_NAMES])


def box_of(rows: list[dict], image: str, face: int = 0) -> tuple[int, ...]:
    (box,) = {tuple(int(r[c]) for c in ("x0", "y0", "x1", "y1")) for r in rows if r["image"] == image
              and r["face"] == str(face)}
    return box


def one_line_error(rc: int, capsys) -> str:
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


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


def test_picture_names_are_distinct_and_map_back_to_their_images():
    paths = [Path("a/1.jpg"), Path("b/1.jpg"), Path("a__1.jpg.jpg"), Path("b/x.png"), Path("b/X.jpg"),
             Path("b/x.jpg.png")]
    assert picture_names(paths) == ["a/1_landmarks.png", "b/1_landmarks.png", "a__1.jpg_landmarks.png",
                                    "b/x.png_landmarks.png", "b/X.jpg_landmarks.png", "b/x.jpg-2_landmarks.png"]
    assert picture_names([Path("/photos/one.jpg")]) == ["one_landmarks.png"]


# --- end to end: crops given by mode -------------------------------------------------------------


def test_full_crop_writes_k_rows_per_image_and_original_size_pictures(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(images), "--crop", "full", "--out", str(out),
                 "--batch-size", "3", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (out / "landmarks.csv").read_text().splitlines()[0] == HEADER
    rows = read_csv(out / "landmarks.csv")
    names = ["000001.jpg", "000002.jpg", "sub/000003.jpg", "wide.png"]  # sorted, recursive
    assert [r["image"] for r in rows[::K]] == [str(images / n) for n in names] and len(rows) == K * len(names)
    assert {r["landmark"] for r in rows} == {str(k) for k in range(K)}  # no named points without a regressor
    for name, stem in zip(names, ["000001", "000002", "sub/000003", "wide"]):  # pictures mirror the folders
        h, w = cv2.imread(str(images / name)).shape[:2]
        assert box_of(rows, str(images / name)) == (0, 0, w, h)  # the region the detector saw
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
    rows = read_csv(tmp_path / "box" / "landmarks.csv")
    assert box_of(rows, str(images / "wide.png")) == (PAD_LEFT, PAD_TOP, PAD_LEFT + 178, PAD_TOP + 218)
    np.testing.assert_allclose(points_of(rows, str(images / "wide.png")), face + [PAD_LEFT, PAD_TOP], atol=2e-3)


# --- end to end: face boxes through the face-crop map -------------------------------------------------


@pytest.mark.parametrize("how", ["--boxes", "--box"])
def test_a_given_face_box_goes_through_the_map_and_maps_back_exactly(face_checkpoint, images, tmp_path, how):
    """Face box (40, 60, 140, 160) of a 178 x 218 image; MAP: centre (89.5, 109.5) + (0, 0.1 * 100) = (89.5, 119.5),
    sides 1.2 * 100 = 120: crop box (89.5 - 59.5, 119.5 - 59.5, +120, +120) = (30, 60, 150, 180)."""
    image = images / "000001.jpg"
    if how == "--boxes":
        (tmp_path / "faces.csv").write_text("image,x0,y0,x1,y1\n000001.jpg,40,60,140,160\n")
        (tmp_path / "000001.jpg").write_bytes(image.read_bytes())  # named relative to the CSV's folder
        image = tmp_path / "000001.jpg"
        options = ["--boxes", str(tmp_path / "faces.csv")]
    else:
        options = ["--box", "40,60,140,160"]
    out = tmp_path / "out"
    assert main(["--checkpoint", str(face_checkpoint), str(image), *options, "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "landmarks.csv")
    assert box_of(rows, str(image)) == (40, 60, 140, 160)  # the face box as given
    crop = (30, 60, 150, 180)
    assert MAP.crop_box((40, 60, 140, 160), (178, 218)) == crop
    # named points: x = 30 + (x' + 0.5) * 120 / 128 - 0.5, y = 60 + (y' + 0.5) * 120 / 128 - 0.5
    by_hand = np.array([[59.5, 104.5], [119.5, 104.5], [89.5, 134.5], [67.0, 157.0], [112.0, 157.0]])
    np.testing.assert_allclose(named_of(rows, str(image)), by_hand, rtol=0, atol=5e-4)  # the CSV's 3 decimals
    # raw points: the detector on face_crop of the crop box, mapped back with x = 30 + (x' + 0.5) * 120 / 32 - 0.5
    model, _, _ = load_model(face_checkpoint)
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    crop_points = detect_crops(model, [face_crop(rgb, crop, 32, WORK_SIDE)])[0]  # (K, 2) crop pixels
    np.testing.assert_allclose(points_of(rows, str(image)), [30, 60] + (crop_points + 0.5) * 120 / 32 - 0.5,
                               rtol=0, atol=1e-3)


def test_a_face_free_image_gives_no_rows_and_a_note(face_checkpoint, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((300, 400, 3), 127, np.uint8))
    out = tmp_path / "out"
    assert main(["--checkpoint", str(face_checkpoint), str(tmp_path / "wall.png"), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert (out / "landmarks.csv").read_text() == HEADER + "\n"
    assert captured.err == f"note: {tmp_path / 'wall.png'}: no face found; no rows for it\n"
    assert "0 faces found by haar in 1 image" in captured.out and (out / "wall_landmarks.png").is_file()


def test_several_faces_each_get_rows_the_largest_first(face_checkpoint, tmp_path):
    left, right = synthetic_face_bgr(1), synthetic_face_bgr(3)
    small = cv2.resize(right, (right.shape[1] * 3 // 4, right.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    canvas = np.full((left.shape[0], left.shape[1] + small.shape[1], 3), 90, np.uint8)
    canvas[:, :left.shape[1]] = left
    canvas[:small.shape[0], left.shape[1]:] = small
    cv2.imwrite(str(tmp_path / "two.png"), canvas)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(face_checkpoint), str(tmp_path / "two.png"), "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "landmarks.csv")
    image = str(tmp_path / "two.png")
    assert len(rows) == 2 * (K + 5) and [r["face"] for r in rows] == ["0"] * (K + 5) + ["1"] * (K + 5)
    big, little = box_of(rows, image, 0), box_of(rows, image, 1)
    assert big[2] <= left.shape[1] < little[0] and big[2] - big[0] > little[2] - little[0]
    for face, box in ((0, big), (1, little)):  # the named points lie in their own face's crop
        crop = MAP.crop_box(box, (canvas.shape[1], canvas.shape[0]))
        np.testing.assert_allclose(named_of(rows, image, face), crop_to_image_xy(NAMED_128, crop, 128), atol=5e-4)


def test_a_boxes_file_gives_several_faces_of_one_image_largest_first(checkpoint, images, tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"image,x0,y0,x1,y1\n{images / '000002.jpg'},10,10,60,60\n"
                     f"{images / '000002.jpg'},20,30,120,130\n{images / 'wide.png'},0,0,100,100\n")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(images / "000002.jpg"), str(images / "000001.jpg"),
                 str(images / "wide.png"), "--boxes", str(boxes), "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "landmarks.csv")
    assert box_of(rows, str(images / "000002.jpg"), 0) == (20, 30, 120, 130)  # the larger box is face 0
    assert box_of(rows, str(images / "000002.jpg"), 1) == (10, 10, 60, 60)
    assert not [r for r in rows if r["image"] == str(images / "000001.jpg")]  # no box given: no rows
    assert len(rows) == 3 * K


def test_a_rerun_never_replaces_an_earlier_output_folder(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "detect"
    argv = ["--checkpoint", str(checkpoint), str(images / "000001.jpg"), "--crop", "full", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    first = (out / "landmarks.csv").read_text()
    capsys.readouterr()
    assert main(argv) == 0 and main(argv) == 0
    assert f"{out} holds an earlier run's files: writing to {tmp_path / 'detect-3'}" in capsys.readouterr().out
    assert (out / "landmarks.csv").read_text() == first
    assert (tmp_path / "detect-2" / "landmarks.csv").read_text() == first
    (tmp_path / "empty").mkdir()
    assert main(argv[:-3] + ["--out", str(tmp_path / "empty"), "--quiet"]) == 0  # an empty folder is used
    assert (tmp_path / "empty" / "landmarks.csv").is_file()


def test_a_big_photo_is_decoded_reduced_and_reported_in_original_pixels(face_checkpoint, tmp_path, monkeypatch):
    """A 2136 x 2616 JPEG (a synthetic face scaled 12 times) is decoded at 1/2; the same run with reduced decoding
    off gives the same numbers within: the named points, which only depend on the crop box (NAMED_128 in every
    crop), 1 px, the most a crop edge moves when it is rounded to the reduced pixels (half of a 2-px pixel); the
    detected points a tenth of a pixel of the 32-px detector input (5 px here; 1 px measured): both paths shrink
    the crop to the same work side, through different filters (libjpeg's scaled IDCT, then area averaging), so
    the inputs differ by a few grey levels. Reporting reduced pixels would be off by about 1,000 px."""
    big = cv2.resize(synthetic_face_bgr(1), None, fx=12, fy=12, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert inference.photo.reduction_factor((big.shape[1], big.shape[0])) == 2
    argv = ["--checkpoint", str(face_checkpoint), str(tmp_path / "big.jpg"), "--box", "361,769,1727,2135", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "reduced")]) == 0
    monkeypatch.setattr(inference.photo, "REDUCED_MIN_SIDE", 10**9)  # every photo decoded whole
    assert main(argv + ["--out", str(tmp_path / "whole")]) == 0
    reduced, whole = read_csv(tmp_path / "reduced" / "landmarks.csv"), read_csv(tmp_path / "whole" / "landmarks.csv")
    image = str(tmp_path / "big.jpg")
    assert box_of(reduced, image) == box_of(whole, image) == (361, 769, 1727, 2135)
    crop = MAP.crop_box((361, 769, 1727, 2135), (big.shape[1], big.shape[0]))
    np.testing.assert_allclose(named_of(whole, image), crop_to_image_xy(NAMED_128, crop, 128), atol=5e-4)
    np.testing.assert_allclose(named_of(reduced, image), named_of(whole, image), rtol=0, atol=1.0)
    np.testing.assert_allclose(points_of(reduced, image), points_of(whole, image), rtol=0,
                               atol=0.1 * (crop[2] - crop[0]) / 32)
    picture = cv2.imread(str(tmp_path / "reduced" / "big_landmarks.png"))
    assert picture.shape == (1308, 1068, 3)  # drawn at the reduced size; the CSV is in the original's pixels


def test_faces_are_found_in_a_big_photo_and_boxed_in_its_pixels(face_checkpoint, tmp_path):
    face = synthetic_face_bgr(1)
    cv2.imwrite(str(tmp_path / "small.png"), face)
    cv2.imwrite(str(tmp_path / "big.jpg"), cv2.resize(face, None, fx=12, fy=12, interpolation=cv2.INTER_CUBIC))
    assert main(["--checkpoint", str(face_checkpoint), str(tmp_path / "small.png"), str(tmp_path / "big.jpg"),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    rows = read_csv(tmp_path / "out" / "landmarks.csv")
    small_box = np.array(box_of(rows, str(tmp_path / "small.png")), dtype=float)
    big_box = np.array(box_of(rows, str(tmp_path / "big.jpg"))) / 12  # the same face, in the big photo's pixels:
    np.testing.assert_allclose(big_box[:2] + big_box[2:], small_box[:2] + small_box[2:], atol=2 * 8)  # centres
    assert 1 / 1.25 < (big_box[2] - big_box[0]) / (small_box[2] - small_box[0]) < 1.25  # sides: a scale step or two


def test_faces_mode_needs_a_face_crop_map(checkpoint, images, tmp_path, capsys):
    rc = main(["--checkpoint", str(checkpoint), str(images / "000001.jpg"), "--crop", "faces", "--out",
               str(tmp_path / "out"), "--quiet"])
    assert "no face-crop map" in one_line_error(rc, capsys)


def test_without_a_checkpoint_the_shipped_model_is_used_or_named_missing(monkeypatch, face_checkpoint, images,
                                                                        tmp_path, capsys):
    monkeypatch.setattr(detect, "DEFAULT_CHECKPOINT", tmp_path / "checkpoints" / "mtfl_k10.pt")
    rc = main([str(images / "000001.jpg"), "--out", str(tmp_path / "out")])
    err = one_line_error(rc, capsys)
    assert "mtfl_k10.pt: the shipped model is not in this copy" in err and "scripts/ship_model.sh" in err
    monkeypatch.setattr(detect, "DEFAULT_CHECKPOINT", face_checkpoint)
    assert main([str(images / "000001.jpg"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "crop faces found" in capsys.readouterr().out  # the shipped model's default: faces


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
        ("box_and_boxes", r"give --box \(one box for every image\) or --boxes FILE\.csv"),
        ("batch_size", r"--batch-size 0: expected >= 1"),
        ("workers", r"--workers -1: expected >= 0"),
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
               "box_with_full": ["--crop", "full", "--box", "0,0,10,10"], "batch_size": ["--batch-size", "0"],
               "box_and_boxes": ["--box", "0,0,10,10", "--boxes", "x.csv"], "workers": ["--workers", "-1"]}
    argv = ["--checkpoint", str(checkpoint), *options.get(case, []), *map(str, inputs),
            "--out", str(tmp_path / "out"), "--quiet"]
    err = one_line_error(main(argv), capsys)
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"boxes\.csv:1: header \(empty file\); expected image,x0,y0,x1,y1"),
        ("file,x0,y0,x1,y1\n", r"boxes\.csv:1: header file,x0,y0,x1,y1; expected image,x0,y0,x1,y1"),
        ("image,x0,y0,x1,y1\n", r"boxes\.csv: no face boxes"),
        ("image,x0,y0,x1,y1\n000001.jpg,1,2,3\n", r"boxes\.csv:2: 4 fields; expected 5"),
        ("image,x0,y0,x1,y1\n\n000001.jpg,1,a,30,40\n", r"boxes\.csv:3: box '1,a,30,40': expected four integers"),
        ("image,x0,y0,x1,y1\n000001.jpg,30,2,3,40\n", r"boxes\.csv:2: box '30,2,3,40': expected 0 <= x0 < x1"),
        ("image,x0,y0,x1,y1\nother.jpg,1,2,30,40\n", r"boxes\.csv:2: other\.jpg is not among the images given"),
        ("image,x0,y0,x1,y1\n000001.jpg,0,0,179,40\n",
         r"boxes\.csv:2: box 0,0,179,40 reaches outside the 178x218 image .*000001\.jpg"),
    ],
)
def test_bad_boxes_files_are_one_line_naming_file_and_line(checkpoint, images, tmp_path, capsys, text, message):
    (tmp_path / "boxes.csv").write_text(text)
    shutil.copy(images / "000001.jpg", tmp_path)
    rc = main(["--checkpoint", str(checkpoint), str(tmp_path / "000001.jpg"), "--boxes", str(tmp_path / "boxes.csv"),
               "--out", str(tmp_path / "out"), "--quiet"])
    err = one_line_error(rc, capsys)
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_help_explains_the_crop_modes_and_columns(capsys, monkeypatch, face_checkpoint, tmp_path):
    monkeypatch.setattr(detect, "DEFAULT_CHECKPOINT", face_checkpoint)
    with pytest.raises(SystemExit):
        detect.main(["--help"])
    text = capsys.readouterr().out
    assert "--crop {faces,centre,full,box}" in text and "x = x0 + (x_crop + 0.5)" in text
    assert "image, face, x0, y0, x1, y1, landmark, x, y" in text and "--boxes FILE.csv" in text
    assert "the shipped model sees 32x32 crops with a 20 % margin" in text  # the checkpoint's own (synthetic: 20)
    assert "70 %" not in text
    monkeypatch.setattr(detect, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    with pytest.raises(SystemExit):
        detect.main(["--help"])
    assert "not in this copy of the repository yet" in capsys.readouterr().out


# --- issue 25: frames, finders, folders, pictures, provenance, the Python call ------------------------


def test_an_exif_rotated_photo_gives_the_points_of_its_upright_copy(face_checkpoint, tmp_path):
    """A face stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view) gives, in the displayed
    frame (the default), the same box and points as the upright copy; the stored frame gives other numbers."""
    from PIL import Image

    upright = np.ascontiguousarray(synthetic_face_bgr(1)[..., ::-1])  # RGB
    Image.fromarray(upright).save(tmp_path / "upright.png")
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # what orientation 6 turns back
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.png", exif=exif.tobytes())
    argv = ["--checkpoint", str(face_checkpoint), str(tmp_path / "upright.png"), str(tmp_path / "sideways.png"),
            "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "out")]) == 0
    rows = read_csv(tmp_path / "out" / "landmarks.csv")
    first, second = str(tmp_path / "upright.png"), str(tmp_path / "sideways.png")
    assert box_of(rows, first) == box_of(rows, second)
    np.testing.assert_allclose(points_of(rows, second), points_of(rows, first), rtol=0, atol=1e-3)
    np.testing.assert_allclose(named_of(rows, second), named_of(rows, first), rtol=0, atol=1e-3)
    assert main(argv + ["--out", str(tmp_path / "stored"), "--frame", "stored"]) == 0
    stored = read_csv(tmp_path / "stored" / "landmarks.csv")
    assert not [r for r in stored if r["image"] == second] or box_of(stored, second) != box_of(rows, second)


def test_another_face_finder_than_the_maps_is_refused_in_one_line(face_checkpoint, images, tmp_path, capsys):
    rc = main(["--checkpoint", str(face_checkpoint), str(images / "000001.jpg"), "--faces", "yunet", "--out",
               str(tmp_path / "out")])
    assert "--faces yunet: " in one_line_error(rc, capsys) and not (tmp_path / "out" / "landmarks.csv").exists()
    assert main(["--checkpoint", str(face_checkpoint), str(images / "000001.jpg"), "--faces", "haar", "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0
    assert "found by haar" in capsys.readouterr().out


def test_folders_follow_symlinks_name_broken_links_and_never_read_the_output(face_checkpoint, images, tmp_path,
                                                                           capsys):
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    shutil.copy(images / "000001.jpg", photos / "a" / "1.jpg")
    (photos / "linked").symlink_to(images / "sub", target_is_directory=True)  # holds 000003.jpg
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    shutil.copy(images / "000002.jpg", photos / "a__1.jpg.jpg")
    (photos / "b").mkdir()
    shutil.copy(images / "000002.jpg", photos / "b" / "1.jpg")
    argv = ["--checkpoint", str(face_checkpoint), str(photos), "--out", str(photos / "out"), "--crop", "full",
            "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert f"note: {photos / 'gone.jpg'}: skipped, a broken link" in first.err
    rows = read_csv(photos / "out" / "landmarks.csv")
    assert sorted({r["image"] for r in rows}) == sorted(str(photos / n) for n in
                                                        ("a/1.jpg", "a__1.jpg.jpg", "b/1.jpg", "linked/000003.jpg"))
    pictures = json.loads((photos / "out" / "run.json").read_text())["pictures"]
    assert len(set(pictures)) == 4 and all((photos / "out" / name).is_file() for name in pictures)
    assert sorted(pictures.values()) == sorted({r["image"] for r in rows})
    assert main(argv) == 0  # the rerun goes to out-2 and reads neither out nor out-2
    assert f"{photos / 'out'}: skipped, it is the output folder" in capsys.readouterr().err
    assert {r["image"] for r in read_csv(photos / "out-2" / "landmarks.csv")} == {r["image"] for r in rows}


def test_run_json_records_model_finder_frame_and_command(face_checkpoint, images, tmp_path):
    out = tmp_path / "out"
    assert main(["--checkpoint", str(face_checkpoint), str(images / "000001.jpg"), "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["model"] == {"file": str(face_checkpoint), "sha256": file_sha256(face_checkpoint)}
    assert record["face_finder"]["name"] == "haar" and record["frame"].startswith("displayed")
    assert record["command"].startswith("python detect.py --checkpoint") and record["done"]["images"] == 1
    assert record["pictures"] == {"000001_landmarks.png": str(images / "000001.jpg")}


def test_pictures_scale_their_markers_with_each_face_and_say_when_no_face_is_found(face_checkpoint, tmp_path):
    from inference.drawing import marker_sizes

    assert marker_sizes(120) == (2, 6, 1) and marker_sizes(1200) == (20, 60, 12) and marker_sizes(10) == (1, 2, 1)
    wall = np.full((300, 400, 3), 127, np.uint8)
    cv2.imwrite(str(tmp_path / "wall.png"), wall)
    assert main(["--checkpoint", str(face_checkpoint), str(tmp_path / "wall.png"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    picture = cv2.imread(str(tmp_path / "out" / "wall_landmarks.png"))
    assert picture.shape == wall.shape and (picture[:12, :60] != 127).any()  # the header "no face found by haar"
    assert (picture[40:] == 127).all()  # and nothing else: no legend without named points


def test_find_landmarks_on_an_array_a_pil_image_and_a_path_agree_with_detect(face_checkpoint, tmp_path):
    from PIL import Image

    from inference import find_landmarks, load_detector

    image_rgb = np.ascontiguousarray(synthetic_face_bgr(1)[..., ::-1])
    Image.fromarray(image_rgb).save(tmp_path / "face.png")
    detector = load_detector(face_checkpoint)
    from_array = find_landmarks(image_rgb, detector)
    from_path = find_landmarks(tmp_path / "face.png", detector)
    from_pil = find_landmarks(Image.open(tmp_path / "face.png"), str(face_checkpoint))
    assert len(from_array) == 1 and from_array[0].points_xy.shape == (K, 2) and from_array[0].named_xy.shape == (5, 2)
    assert main(["--checkpoint", str(face_checkpoint), str(tmp_path / "face.png"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    rows = read_csv(tmp_path / "out" / "landmarks.csv")
    for found in (from_array, from_path, from_pil):
        assert found[0].face_box == box_of(rows, str(tmp_path / "face.png"))
        np.testing.assert_allclose(found[0].points_xy, points_of(rows, str(tmp_path / "face.png")), atol=1e-3)
        np.testing.assert_allclose(found[0].named_xy, named_of(rows, str(tmp_path / "face.png")), atol=1e-3)
    with pytest.raises(UserError, match=r"an image of shape \(4, 4, 4\) and dtype uint8: expected \(H, W, 3\)"):
        find_landmarks(np.zeros((4, 4, 4), np.uint8), detector)


# --- issue 26: Ctrl-C, the pixel limit, rows kept before a bad image ---------------------------------


def test_ctrl_c_is_one_line_and_keeps_the_rows_of_the_images_done(checkpoint, images, tmp_path, monkeypatch, capsys):
    real, calls = detect.write_batch, []

    def interrupted_second_batch(batch, *args):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(batch, *args)

    monkeypatch.setattr(detect, "write_batch", interrupted_second_batch)
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(checkpoint), str(images), "--crop", "full", "--batch-size", "1", "--workers", "0",
               "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: interrupted (Ctrl-C) after 1 image; ") and "landmarks.csv keeps the rows" in err
    assert {r["image"] for r in read_csv(out / "landmarks.csv")} == {str(images / "000001.jpg")}


def test_a_photo_over_the_pixel_limit_is_one_line_or_skipped(checkpoint, images, tmp_path, capsys):
    argv = ["--checkpoint", str(checkpoint), str(images / "000001.jpg"), str(images / "wide.png"), "--crop", "full",
            "--max-pixels", "0.05", "--quiet"]  # 000001.jpg: 178 x 218 = 0.039 MP; wide.png: 258 x 248 = 0.064 MP
    err = one_line_error(main(argv + ["--out", str(tmp_path / "a")]), capsys)
    assert f"{images / 'wide.png'}: 258 x 248 pixels" in err and "above the limit of 0.05 MP (--max-pixels)" in err
    with pytest.warns(UserWarning, match="skipped 1 of 2 images"):
        assert main(argv + ["--out", str(tmp_path / "b"), "--skip-bad-images"]) == 0
    assert {r["image"] for r in read_csv(tmp_path / "b" / "landmarks.csv")} == {str(images / "000001.jpg")}


def test_a_bad_image_keeps_the_rows_of_every_image_before_it_in_its_batch(checkpoint, images, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(checkpoint), str(images / "000001.jpg"), str(images / "000002.jpg"),
               str(tmp_path / "broken.jpg"), "--crop", "full", "--out", str(out), "--quiet"])  # one batch of 32
    assert "broken.jpg: image does not decode" in one_line_error(rc, capsys)
    assert [r["image"] for r in read_csv(out / "landmarks.csv")][::K] == [str(images / "000001.jpg"),
                                                                          str(images / "000002.jpg")]
