"""datasets/faces.py: face boxes from OpenCV's shipped Haar cascade, and the map from a face box to a training crop."""

import cv2
import numpy as np
import pytest

import datasets.faces
from datasets.synthetic import render_face
from utils.errors import UserError
from datasets.faces import BoxToCrop, find_faces, fit_box_to_crop, load_face_cascade


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
    monkeypatch.setattr(datasets.faces, "CASCADE_FILE", "no_such_cascade.xml")
    with pytest.raises(UserError) as info:
        load_face_cascade()
    message = str(info.value)
    assert "\n" not in message and "no_such_cascade.xml" in message and "opencv-python-headless 4" in message
