"""inference/: face boxes (YuNet, the Haar cascade), photos of any size and frame, the map from a face box to a
training crop, the pictures and find_landmarks."""

import cv2
import numpy as np
import pytest
import torch

import inference.finders
import inference.photo
from datasets.synthetic import render_face
from utils.errors import UserError
from inference.points import detect_crops, look_points
from utils.geometry import HEATMAP_STRIDE
from utils.metrics import RidgeModel
from inference.crops import BoxToCrop, FaceCropping, crop_for_model, face_crop, face_input, fit_box_to_crop
from inference.finders import (CASCADE_FILE, face_holding, find_faces, load_face_cascade, photo_faces,
                               thread_finder)
from inference.photo import Photo, read_photo, reduction_factor


@pytest.fixture(scope="module")
def cascade():
    return load_face_cascade()


def synthetic_face_rgb(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic face the cascade finds (seed [0, 1] and [0, 3] are found), as RGB, and its 5 points."""
    image_bgr, points = render_face(np.random.default_rng([0, index]))
    return np.ascontiguousarray(image_bgr[..., ::-1]), points


def test_crop_box_by_hand_and_clamped_to_the_image():
    m = BoxToCrop(shift_x=0.0, shift_y=0.1, width_scale=1.2, height_scale=1.2)
    assert m.crop_box((100, 100, 200, 200), (400, 400)) == (90, 100, 210, 220)  # centre (149.5, 159.5), side 120
    assert m.crop_box((0, 0, 100, 100), (400, 400)) == (0, 0, 110, 120)  # the part inside the image
    assert BoxToCrop(0.0, 0.0, 1.0, 1.0).crop_box((10, 20, 50, 80), (100, 100)) == (10, 20, 50, 80)


def test_fit_recovers_a_known_map():
    rng = np.random.default_rng(0)
    truth = BoxToCrop(shift_x=0.02, shift_y=0.12, width_scale=0.64, height_scale=0.68)
    x0, y0 = rng.uniform(500, 900, 50), rng.uniform(500, 900, 50)
    side = rng.uniform(300, 500, 50)
    faces = np.stack([x0, y0, x0 + side, y0 + side], axis=1).round().astype(int)
    crops = np.array([truth.crop_box(tuple(f), (3000, 3000)) for f in faces])
    fitted = fit_box_to_crop(faces, crops)
    assert np.allclose(list(fitted.to_dict().values()), list(truth.to_dict().values()), atol=4e-3)
    with pytest.raises(ValueError, match="two \\(N, 4\\) box arrays"):
        fit_box_to_crop(faces[:3], crops[:2])


def test_a_face_free_image_has_no_faces(cascade):
    assert find_faces(np.full((300, 400, 3), 127, np.uint8), cascade) == []


def test_a_synthetic_face_is_found_around_its_eyes(cascade):
    image, points = synthetic_face_rgb(1)
    (box,) = find_faces(image, cascade)
    eyes = points[:2].mean(axis=0)
    assert box[0] < eyes[0] < box[2] and box[1] < eyes[1] < box[3]
    assert 0.4 < (box[2] - box[0]) / image.shape[1] < 0.9


def test_several_faces_come_largest_first(cascade):
    (left, _), (right, _) = synthetic_face_rgb(1), synthetic_face_rgb(3)
    small = cv2.resize(right, (right.shape[1] * 3 // 4, right.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    canvas = np.full((left.shape[0], left.shape[1] + small.shape[1], 3), 90, np.uint8)
    canvas[:, :left.shape[1]] = left
    canvas[:small.shape[0], left.shape[1]:] = small
    boxes = find_faces(canvas, cascade)
    assert len(boxes) == 2
    (big, little) = boxes
    assert big[2] <= left.shape[1] < little[0]  # the full-size face on the left, the smaller one on the right
    assert (big[2] - big[0]) > (little[2] - little[0])


def test_a_large_photo_is_searched_on_a_downscaled_copy_and_boxes_come_back_in_its_pixels(cascade):
    image, points = synthetic_face_rgb(1)
    (small_box,) = find_faces(image, cascade)
    big = cv2.resize(image, (image.shape[1] * 12, image.shape[0] * 12), interpolation=cv2.INTER_LINEAR)
    (big_box,) = find_faces(big, cascade)
    assert max(big.shape) > 2000
    assert np.allclose(np.array(big_box) / 12, small_box, atol=8)  # the same face, in the big photo's pixels


def test_an_opencv_without_the_cascade_is_one_line(monkeypatch):
    monkeypatch.setattr(inference.finders, "CASCADE_FILE", "no_such_cascade.xml")
    with pytest.raises(UserError) as info:
        load_face_cascade()
    message = str(info.value)
    assert "\n" not in message and "no_such_cascade.xml" in message and "opencv-python-headless 4" in message


# --- photos of any size ------------------------------------------------------------------------


def blob_image(width: int, height: int, centre_xy: tuple[float, float], sigma: float) -> np.ndarray:
    """(height, width, 3) uint8: a bright Gaussian blob centred at a known (x, y) on black."""
    along_x = np.exp(-(np.arange(width) - centre_xy[0]) ** 2 / (2 * sigma**2))  # (width,)
    along_y = np.exp(-(np.arange(height) - centre_xy[1]) ** 2 / (2 * sigma**2))  # (height,)
    blob = (255 * np.outer(along_y, along_x)).round().astype(np.uint8)  # separable: cheap for big images
    return np.repeat(blob[..., None], 3, axis=2)


def centroid_xy(image: np.ndarray) -> np.ndarray:
    weights = image[..., 0].astype(np.float64)
    return np.array([weights.sum(axis=0) @ np.arange(image.shape[1]), weights.sum(axis=1) @ np.arange(image.shape[0])]
                    ) / weights.sum()


def test_reduction_factor_keeps_the_longer_side_at_1000_pixels_or_more():
    assert [reduction_factor((w, 10)) for w in (400, 1999, 2000, 4400, 7999, 8000, 16000, 40000)] == \
        [1, 1, 2, 4, 4, 8, 8, 8]
    assert reduction_factor((300, 4401)) == 4


@pytest.mark.parametrize("suffix, size_wh, factor", [(".jpg", (2001, 1003), 2), (".png", (2003, 1001), 2)])
def test_a_large_photo_is_read_reduced_and_its_pixels_map_to_the_stored_ones(tmp_path, suffix, size_wh, factor):
    """A JPEG is decoded at 1/f by libjpeg: ceil(W / f) pixels, each covering f stored pixels, so a blob at stored
    (x, y) is at ((x + 0.5) / f - 0.5, ...); another format is shrunk by area averaging to round(W / f), scale W / w."""
    width, height = size_wh
    centre = np.array([1234.3, 765.8])
    path = tmp_path / f"big{suffix}"
    cv2.imwrite(str(path), blob_image(width, height, centre, 40.0))
    photo = read_photo(path)
    assert photo.size_wh == size_wh and photo.reduced
    if suffix == ".jpg":
        assert photo.pixels.shape[:2] == (-(-height // factor), -(-width // factor))  # ceil
        assert photo.scale_xy == (factor, factor)
    else:
        assert photo.pixels.shape[:2] == (round(height / factor), round(width / factor))
        assert photo.scale_xy == (width / photo.pixels.shape[1], height / photo.pixels.shape[0])
    np.testing.assert_allclose(photo.to_pixels_xy(centre), centroid_xy(photo.pixels), atol=0.05)
    box = (101, 203, 1301, 903)  # stored pixels
    pixel_box = photo.pixel_box(box)
    assert np.allclose(photo.stored_box(pixel_box), box, atol=max(photo.scale_xy) / 2)


def test_a_small_photo_is_read_as_stored(tmp_path):
    image, _ = synthetic_face_rgb(1)
    cv2.imwrite(str(tmp_path / "face.png"), image[..., ::-1])
    photo = read_photo(tmp_path / "face.png")
    assert not photo.reduced and photo.size_wh == (178, 218) and np.array_equal(photo.pixels, image)


def test_faces_of_a_reduced_photo_are_boxed_in_stored_pixels(cascade):
    image, _ = synthetic_face_rgb(1)
    (box,) = find_faces(image, cascade)
    photo = Photo(image, (178 * 4, 218 * 4), (4.0, 4.0))  # as if decoded at 1/4
    assert photo_faces(photo, thread_finder("haar")) == [(tuple(4 * v for v in box),) * 2]  # the anchor: the box


def test_face_input_with_and_without_a_face_crop_map():
    image = blob_image(300, 200, (150.0, 100.0), 10.0)
    photo = Photo.of(image)
    plain = face_input(photo, (100, 50, 200, 150), 32)
    assert plain.seen_box == (100, 50, 200, 150) and np.array_equal(plain.crop, crop_for_model(image, (100, 50, 200,
                                                                                                      150), 32))
    cropping = FaceCropping(BoxToCrop(0.0, 0.1, 1.2, 1.2), work_side=40)
    mapped = face_input(photo, (100, 50, 200, 150), 32, cropping)
    assert mapped.face_box == (100, 50, 200, 150) and mapped.seen_box == (90, 50, 210, 170)  # centre y 99.5 + 10
    assert np.array_equal(mapped.crop, face_crop(image, (90, 50, 210, 170), 32, 40))


def test_face_cropping_reads_back_and_refuses_a_malformed_entry():
    cropping = FaceCropping(BoxToCrop(0.01, 0.1, 0.9, 1.1), work_side=95)
    assert FaceCropping.from_dict(cropping.to_dict() | {"cascade": CASCADE_FILE}, "x.pt") == cropping
    for bad in ({}, {"box_to_crop": {"shift_x": 0}, "work_side": 3},
                {"box_to_crop": BoxToCrop(0, 0, -1, 1).to_dict(), "work_side": 3}):
        with pytest.raises(UserError, match=r"^x\.pt: ") as info:
            FaceCropping.from_dict(bad, "x.pt")
        assert "\n" not in str(info.value)


def test_face_input_makes_each_look_of_a_face_crop_map():
    image = blob_image(300, 200, (150.0, 100.0), 10.0)
    wider, lower = BoxToCrop(0.0, 0.1, 1.4, 1.4), BoxToCrop(0.0, 0.2, 1.2, 1.2)
    cropping = FaceCropping(BoxToCrop(0.0, 0.1, 1.2, 1.2), 40, (wider, lower))
    made = face_input(Photo.of(image), (100, 50, 200, 150), 32, cropping)
    assert made.seen_box == (90, 50, 210, 170)
    # wider: centre (149.5, 109.5), side 140 -> (80, 40, 220, 180); lower: centre y 119.5, side 120 -> (90, 60, 210, 180)
    assert [seen for seen, _ in made.looks] == [(80, 40, 220, 180), (90, 60, 210, 180)]
    assert np.array_equal(made.looks[1][1], face_crop(image, (90, 60, 210, 180), 32, 40))


def test_look_points_are_each_looks_points_in_the_main_crops_frame():
    """A stand-in detector that finds the bright blob: in every look the blob centre (150, 100) of the photo lands,
    in the main crop (90, 50, 210, 170) at 128 px, at (150 - 90 + 0.5) * 128 / 120 - 0.5 = 64.03, (100 - 50 + 0.5)
    * 128 / 120 - 0.5 = 53.37."""

    class Blob(torch.nn.Module):
        def detect(self, images):  # (B, 3, S, S) -> points (B, 1, 2) in heatmap pixels at stride 4, heatmaps
            weights = images[:, 0] ** 8  # (B, S, S)
            grid = torch.arange(images.shape[-1], dtype=torch.float32)
            x = (weights.sum(1) * grid).sum(1) / weights.sum((1, 2))
            y = (weights.sum(2) * grid).sum(1) / weights.sum((1, 2))
            return (torch.stack([x, y], -1)[:, None] + 0.5) / HEATMAP_STRIDE - 0.5, None

    image = blob_image(300, 200, (150.0, 100.0), 12.0)
    cropping = FaceCropping(BoxToCrop(0.0, 0.1, 1.2, 1.2), 0, (BoxToCrop(0.0, 0.1, 1.5, 1.5),
                                                                BoxToCrop(0.1, 0.2, 1.2, 1.2)))
    faces = [face_input(Photo.of(image), (100, 50, 200, 150), 64, cropping)]
    model = Blob()
    points = detect_crops(model, [faces[0].crop])  # (1, 1, 2) main crop pixels at 64 px
    features = look_points(model, faces, points, 64)  # (1, 3, 2)
    assert features.shape == (1, 3, 2)
    np.testing.assert_allclose(features[0], [[64.03, 53.37]] * 3, atol=0.6)  # each look finds the blob there


def test_face_cropping_with_looks_reads_back_and_checks_its_regressor():
    looks = (BoxToCrop(0.0, 0.1, 1.0, 1.1), BoxToCrop(0.05, 0.1, 0.9, 1.1))
    regressor = RidgeModel(np.ones((10, 2 * 3 * 4)), np.zeros(24), np.zeros(10))  # 3 looks of K = 4 points
    data = FaceCropping(BoxToCrop(0.01, 0.1, 0.9, 1.1), 95, looks, regressor).to_dict()
    read = FaceCropping.from_dict(data, "x.pt", num_points=4)
    assert read.looks == looks and np.array_equal(read.looks_regressor.weights, regressor.weights)
    with pytest.raises(UserError, match=r"^x\.pt: its looks regressor has shape \(10, 24\); expected \(10, 30\)"):
        FaceCropping.from_dict(data, "x.pt", num_points=5)
    with pytest.raises(UserError, match=r"^x\.pt \(face_crop looks_regressor\): not a saved regressor"):
        FaceCropping.from_dict({k: v for k, v in data.items() if k != "looks_regressor"}, "x.pt")


def test_face_holding_picks_the_largest_box_around_a_point():
    boxes = [(0, 0, 100, 100), (40, 40, 60, 60), (200, 0, 300, 100)]
    assert face_holding(boxes, np.array([50.0, 50.0])) == 0
    assert face_holding(boxes, np.array([250.0, 10.0])) == 2
    assert face_holding(boxes, np.array([150.0, 50.0])) is None


# --- YuNet, the default face finder ---------------------------------------------------------------


def test_the_yunet_file_and_its_note_are_tracked_by_git():
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files", "checkpoints"], cwd=repo, capture_output=True, text=True)
    tracked = listed.stdout.split()
    assert {"checkpoints/yunet_s_640_640.onnx", "checkpoints/README.md"} <= set(tracked)
    note = (repo / "checkpoints" / "README.md").read_text()
    assert inference.finders.YUNET_SHA256 in note and "Apache-2.0" in note and "ShiqiYu/libfacedetection.train" in note


def test_yunet_finds_a_synthetic_face_around_its_eyes_in_the_photos_pixels():
    image, points = synthetic_face_rgb(1)
    big = cv2.resize(image, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)  # searched on a copy 640 px long
    found = thread_finder("yunet").find(big)
    assert found and face_holding([face.box for face in found], 5 * points[:2].mean(axis=0) + 2) == 0
    anchor = np.array(found[0].anchor, dtype=float)  # the box of YuNet's five points: about the annotated points'
    truth = np.concatenate([5 * points.min(axis=0) + 2, 5 * points.max(axis=0) + 3])
    assert np.abs(anchor - truth).max() < 0.15 * (truth[2] - truth[0])
    assert thread_finder("yunet").find(np.full((300, 400, 3), 127, np.uint8)) == []


def test_a_yunet_file_with_another_sha256_is_one_line(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(inference.finders.YUNET_FILE.read_bytes()[:-1] + b"x")
    with pytest.raises(UserError, match=r"yunet\.onnx: sha256 [0-9a-f]{12}\.\.\. is not the shipped YuNet file's"):
        inference.finders.load_yunet(bad)
    with pytest.raises(UserError, match=r"missing\.onnx: cannot read the YuNet face finder"):
        inference.finders.load_yunet(tmp_path / "missing.onnx")


def test_a_face_crop_map_records_its_finder_and_older_ones_are_haar():
    cropping = FaceCropping(BoxToCrop(0.0, 0.1, 1.2, 1.3), 40, finder="yunet")
    assert FaceCropping.from_dict(cropping.to_dict(), "x.pt").finder == "yunet"
    old = {key: value for key, value in cropping.to_dict().items() if key != "finder"} | {"cascade": CASCADE_FILE}
    assert FaceCropping.from_dict(old, "x.pt").finder == "haar"
    with pytest.raises(UserError, match=r"x\.pt: its face_crop was fitted on the face finder 'sift'"):
        FaceCropping.from_dict(cropping.to_dict() | {"finder": "sift"}, "x.pt")


# --- photo frames and the pixel limit -------------------------------------------------------------


def save_with_orientation(path, image_rgb: np.ndarray, orientation: int) -> None:
    """A lossless PNG of `image_rgb` (the stored pixels) whose EXIF says `orientation`."""
    from PIL import Image

    picture = Image.fromarray(image_rgb)
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_is_turned_as_pillow_turns_it(tmp_path, orientation):
    from PIL import Image, ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_with_orientation(tmp_path / "p.png", stored, orientation)
    photo = read_photo(tmp_path / "p.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "p.png")).convert("RGB"))
    assert np.array_equal(photo.pixels, expected) and photo.size_wh == (expected.shape[1], expected.shape[0])
    assert photo.frame == "displayed"
    assert np.array_equal(read_photo(tmp_path / "p.png", upright=False).pixels, stored)


def test_a_photo_over_the_pixel_limit_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((300, 400, 3), np.uint8))

    def no_decoding(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(inference.photo, "decode_photo", no_decoding)
    with pytest.raises(UserError, match=r"big\.png: 400 x 300 pixels \(0 MP\), above the limit of 0\.1 MP"):
        read_photo(tmp_path / "big.png", max_pixels=100_000)
    assert inference.photo.DEFAULT_MAX_PIXELS == 200_000_000


def test_a_face_crop_map_starts_from_the_finders_anchor_or_a_given_boxs_estimated_one():
    """YuNet's anchor (the box of its five points) places the crop; a box given without one goes through
    box_to_anchor first. By hand: anchor (120, 80, 180, 140) -> centre (149.5, 109.5) + (0, 6), side 72 ->
    (114, 80, 186, 152); box (100, 50, 200, 150) -> anchor scaled by 0.6: (120, 70, 180, 130) -> (114, 70, 186, 142)."""
    photo = Photo.of(blob_image(300, 200, (150.0, 100.0), 10.0))
    cropping = FaceCropping(BoxToCrop(0.0, 0.1, 1.2, 1.2), 40, finder="yunet", box_to_anchor=BoxToCrop(0, 0, 0.6, 0.6))
    found = face_input(photo, (100, 50, 200, 150), 32, cropping, anchor=(120, 80, 180, 140))
    assert found.face_box == (100, 50, 200, 150) and found.seen_box == (114, 80, 186, 152)
    given = face_input(photo, (100, 50, 200, 150), 32, cropping)
    assert given.seen_box == (114, 70, 186, 142)
    back = FaceCropping.from_dict(cropping.to_dict(), "x.pt")
    assert back == cropping and back.box_to_anchor == BoxToCrop(0, 0, 0.6, 0.6)
    assert FaceCropping.from_dict({k: v for k, v in cropping.to_dict().items() if k != "box_to_anchor"},
                                  "x.pt").box_to_anchor is None
