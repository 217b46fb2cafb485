"""Geometry of views and crops: hand-computed boxes and maps, round trips against OpenCV."""

import cv2
import numpy as np
import pytest

from datasets.eval_crops import eval_crop
from datasets.transforms import (crop_margin, crop_resize, fixed_crop_box, hflip_image,
                                 hflip_points, landmark_crop_box, points_to_crop,
                                 rotate_and_crop, rotation_matrix_enlarged, transform_points,
                                 warp_crop, warp_image)

# Typical CelebA landmarks: x spans 69..108, y spans 111..152.
CELEBA_POINTS = np.array([[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]], np.float32)


def test_rotation_zero_is_identity_with_same_canvas():
    matrix, canvas = rotation_matrix_enlarged(178, 218, 0.0)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert canvas == (178, 218)


def test_rotation_canvas_fits_rotated_corners_tightly():
    width, height = 178, 218
    for angle in (-40.0, -12.5, 30.0, 90.0):
        matrix, (canvas_w, canvas_h) = rotation_matrix_enlarged(width, height, angle)
        corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5],
                            [width - 0.5, height - 0.5]])
        mapped = transform_points(corners, matrix)
        assert mapped.min() >= -0.5 - 1e-3
        assert mapped[:, 0].max() <= canvas_w - 0.5 + 1e-3
        assert mapped[:, 1].max() <= canvas_h - 0.5 + 1e-3
        # Tight: the rotated extent needs all but less than one pixel of the canvas.
        extent = mapped.max(axis=0) - mapped.min(axis=0)
        assert np.all(np.array([canvas_w, canvas_h]) - extent < 1.0 + 1e-3)
    assert rotation_matrix_enlarged(width, height, 90.0)[1] == (height, width)


def test_positive_angle_turns_clockwise_on_screen_about_the_centre():
    matrix, (canvas_w, canvas_h) = rotation_matrix_enlarged(101, 101, 90.0)
    centre, east = transform_points(np.array([[50.0, 50.0], [90.0, 50.0]]), matrix)
    np.testing.assert_allclose(centre, [(canvas_w - 1) / 2, (canvas_h - 1) / 2], atol=1e-4)
    # y points down, so clockwise on screen takes a point east of the centre to the south.
    np.testing.assert_allclose(east - centre, [0.0, 40.0], atol=1e-4)


def test_warped_image_content_follows_transformed_points():
    image = np.zeros((60, 80, 3), np.uint8)
    cv2.circle(image, (20, 15), 3, (255, 255, 255), -1)
    matrix, canvas = rotation_matrix_enlarged(80, 60, 33.0)
    warped = warp_image(image, matrix, canvas)
    x, y = np.rint(transform_points(np.array([[20.0, 15.0]]), matrix)[0]).astype(int)
    assert warped[y, x].min() > 200
    assert warped.shape[:2] == (canvas[1], canvas[0])


def test_warp_crop_equals_warping_the_whole_canvas_then_slicing():
    image = np.random.default_rng(0).integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
    for angle in (7.0, -33.0):
        matrix, canvas = rotation_matrix_enlarged(178, 218, angle)
        for box in ((0, 0, 40, 30), (41, 83, 136, 180), (100, 150, canvas[0], canvas[1])):
            whole = warp_image(image, matrix, canvas)[box[1]:box[3], box[0]:box[2]]
            part = warp_crop(image, matrix, box)
            assert part.shape == whole.shape
            # OpenCV 4 samples at 1/32-pixel positions (INTER_BITS 5): the shifted matrix may round a few
            # positions to the neighbouring 1/32, which on this per-pixel noise moves a value by up to
            # ceil(255/32) = 8 levels; the rest are equal
            diff = np.abs(part.astype(int) - whole)
            assert diff.max() <= 8 and (diff > 0).mean() < 0.05


def test_margin_switches_to_eight_pixels_for_small_faces():
    assert crop_margin(CELEBA_POINTS, 70) == 28  # delta = (39 + 41) / 2 = 40, int(0.7 * 40)
    assert crop_margin(CELEBA_POINTS, 16) == 6
    small = np.array([[10, 10], [25, 10], [17, 18], [12, 30], [24, 30]], np.float32)
    assert crop_margin(small, 70) == 8  # delta = (15 + 20) / 2 = 17.5 < 20


def test_landmark_box_hand_computed_and_clamped():
    assert landmark_crop_box(CELEBA_POINTS, 70, (178, 218)) == (41, 83, 136, 180)
    # Rounding before the margin: min x 68.6 -> 69, max y 152.4 -> 152.
    shifted = CELEBA_POINTS + np.array([[-0.4, 0.0], [0, 0], [0, 0], [0, 0.4], [0, 0]], np.float32)
    assert landmark_crop_box(shifted, 70, (178, 218)) == (41, 83, 136, 180)
    near_corner = CELEBA_POINTS - np.array([60, 100], np.float32)
    assert landmark_crop_box(near_corner, 70, (100, 70)) == (0, 0, 76, 70)


def test_fixed_box_matches_typical_celeba_crop_or_centre_square():
    assert fixed_crop_box((178, 218), 70) == (41, 83, 136, 180)
    assert fixed_crop_box((300, 200), 70) == (50, 0, 250, 200)
    assert fixed_crop_box((120, 161), 70) == (0, 20, 120, 140)


def test_points_to_crop_hand_computed():
    box = (10, 20, 42, 84)  # 32 x 64 pixels -> 128 x 128: scale 4 in x, 2 in y
    points = np.array([[10.0, 20.0], [25.5, 51.5], [41.0, 83.0]])
    expected = [[(0 + 0.5) * 4 - 0.5, (0 + 0.5) * 2 - 0.5],
                [63.5, 63.5],  # the box centre goes to the crop centre
                [(31 + 0.5) * 4 - 0.5, (63 + 0.5) * 2 - 0.5]]
    np.testing.assert_allclose(points_to_crop(points, box, 128), expected)


def test_points_to_crop_agrees_with_cv2_resize_of_a_blob():
    """A blob's intensity centroid after crop_resize sits where points_to_crop sends its centre."""
    yy, xx = np.mgrid[0:100, 0:120].astype(np.float64)
    centre = np.array([47.3, 58.6])
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 3.0 ** 2))
    image = np.repeat((blob * 255).astype(np.float32)[:, :, None], 3, axis=2)
    box = (30, 40, 62, 80)  # 32 x 40 -> 128: scales 4 and 3.2
    crop = crop_resize(image, box, 128)[:, :, 0].astype(np.float64)
    cy, cx = np.mgrid[0:128, 0:128]
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    mapped = points_to_crop(centre[None], box, 128)[0]
    np.testing.assert_allclose(centroid, mapped, atol=0.1)
    # The map without the half-pixel terms is off by (scale - 1) / 2 pixels: 1.5 and 1.1.
    assert np.abs(centroid - (centre - [30, 40]) * [4.0, 3.2]).max() > 1.0


def test_hflip_mirrors_about_pixel_centres_and_swaps_labels():
    flipped = hflip_points(CELEBA_POINTS, 178)
    np.testing.assert_allclose(flipped[0], [177 - 108, 111])  # new left eye = old right eye
    np.testing.assert_allclose(flipped[2], [177 - 88, 136])
    np.testing.assert_allclose(flipped[3], [177 - 105, 152])
    np.testing.assert_allclose(hflip_points(flipped, 178), CELEBA_POINTS)
    image = np.zeros((5, 7, 3), np.uint8)
    image[2, 1] = 255
    assert hflip_image(image)[2, 7 - 1 - 1].max() == 255


def test_eval_crop_end_to_end_hand_computed():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
    crop, points = eval_crop(image, CELEBA_POINTS, 70, 128)
    expected = cv2.resize(image[83:180, 41:136], (128, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(crop, expected.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert crop.dtype == np.float32 and crop.shape == (3, 128, 128)
    # Left eye (69, 111): ((69 - 41 + 0.5) * 128 / 95 - 0.5, (111 - 83 + 0.5) * 128 / 97 - 0.5).
    np.testing.assert_allclose(points[0], [28.5 * 128 / 95 - 0.5, 28.5 * 128 / 97 - 0.5],
                               rtol=1e-6)
    _, no_points = eval_crop(image, None, 70, 64)
    assert np.isnan(no_points).all() and no_points.shape == (5, 2)


@pytest.mark.parametrize("angle", [0.0, 25.0])
def test_unannotated_view_keeps_the_fixed_box_around_the_rotated_centre(angle):
    """A 300x200 image with a disc at its centre: the fixed crop stays centred on the disc."""
    image = np.zeros((200, 300, 3), np.uint8)
    cv2.circle(image, (150, 100), 10, (255, 255, 255), -1)
    view, points, _ = rotate_and_crop(image, None, angle, 70, 64)
    assert points is None and view.shape == (64, 64, 3)
    ys, xs = np.nonzero(view[:, :, 0] > 128)
    np.testing.assert_allclose([xs.mean(), ys.mean()], [31.5, 31.5], atol=0.6)
