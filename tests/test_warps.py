"""Elastic warps of x' (datasets/warps.py) and the equivariance loss through them (losses.py)."""

import numpy as np
import pytest
import torch

from datasets.pairs import make_pair
from datasets.warps import displacement_at, sample_displacements, warp_image, warp_points
from losses import apply_affine, equivariance_loss
from losses import displacement_at as torch_displacement_at
from test_pairs import dotted_face


def test_displacement_is_bilinear_between_nodes_by_hand():
    # 3 x 3 nodes over a 9-px crop: nodes at pixels 0, 4, 8
    field = np.zeros((2, 3, 3), dtype=np.float32)
    field[0, 0, 1] = 2.0  # dx at node (row 0, col 1) = pixel (4, 0)
    field[1, 1, 1] = -4.0  # dy at node (row 1, col 1) = pixel (4, 4)
    points = np.array([[4, 0], [2, 0], [4, 2], [3, 3], [-5, 0], [np.nan, 1]], dtype=np.float32)
    expected = np.array([
        [2.0, 0.0],  # on the node
        [1.0, 0.0],  # halfway between pixel 0 (0) and 4 (2)
        [1.0, -2.0],  # halfway between rows 0 and 1 at column 4
        [0.75 * 0.25 * 2.0, 0.75 * 0.75 * -4.0],  # bilinear weights (3/4 of col 1, 1/4 of row 0 for dx)
        [0.0, 0.0],  # clamped to the border column 0
        [np.nan, np.nan],
    ])
    np.testing.assert_allclose(displacement_at(field, points, 9), expected, atol=1e-6)


def test_torch_displacement_matches_numpy_inside_and_outside_the_crop():
    rng = np.random.default_rng(0)
    field = sample_displacements(rng, 5, 2.0)  # (2, 5, 5)
    points = rng.uniform(-6, 38, size=(40, 2)).astype(np.float32)  # some outside the 32-px crop
    ours = torch_displacement_at(torch.from_numpy(field)[None], torch.from_numpy(points)[None], 32)[0]
    np.testing.assert_allclose(ours.numpy(), displacement_at(field, points, 32), atol=1e-5)


def test_warped_points_solve_q_plus_d_of_q_equals_p():
    rng = np.random.default_rng(1)
    field = sample_displacements(rng, 5, 0.05 * 32)
    points = rng.uniform(0, 31, size=(20, 2)).astype(np.float32)
    warped = warp_points(points, field, 32)
    np.testing.assert_allclose(warped + displacement_at(field, warped, 32), points, atol=1e-4)
    assert np.abs(warped - points).max() > 0.5  # the warp moved them


@pytest.mark.parametrize("seed", range(4))
def test_warp_moves_pixels_as_it_moves_points(seed):
    """Warp an image whose pixels hold their own (x, y): each warped pixel q shows the content of some
    source point p, and warp_points sends p to q. Tolerance 0.05 px (cv2.remap samples in 1/32-px steps).
    """
    size = 32
    ys, xs = np.mgrid[:size, :size].astype(np.float32)
    coordinates = np.stack((xs, ys, np.zeros_like(xs)), axis=2)  # (S, S, 3) float32 image
    field = sample_displacements(np.random.default_rng(seed), 5, 0.04 * size)
    warped = warp_image(coordinates, field)
    pixels = np.stack((xs[4:-4, 4:-4].ravel(), ys[4:-4, 4:-4].ravel()), axis=1)  # (N, 2) interior q
    shown = warped[4:-4, 4:-4, :2].reshape(-1, 2)  # (N, 2) the source point p each q shows
    assert np.abs(shown - pixels).max() > 0.5  # the warp moved them
    np.testing.assert_allclose(warp_points(shown, field, size), pixels, atol=0.05)


@pytest.mark.parametrize("flip", [False, True])
def test_view_map_and_warp_send_the_annotated_points_of_x_onto_those_of_x_prime(flip):
    """The loss's target for a point q on warped x' is q + D(q): for the annotated points, x's mapped points."""
    for seed in range(10):
        image, points = dotted_face(seed)
        pair = make_pair(image, points, np.random.default_rng(seed), angle=15.0, tight=70,
                         tight_jitter=4.0, flip=flip, size=32, warp_sigma=0.04, warp_grid=5)
        matrix = torch.from_numpy(pair["x_to_x_prime"])[None].double()  # (1, 2, 3)
        mapped = apply_affine(torch.from_numpy(pair["points_x"])[None].double(), matrix)[0]  # (5, 2)
        pulled_back = pair["points_x_prime"] + displacement_at(pair["x_prime_warp"], pair["points_x_prime"], 32)
        np.testing.assert_allclose(mapped.numpy(), pulled_back, atol=1e-3)
        loss = equivariance_loss(torch.from_numpy(pair["points_x"])[None], torch.from_numpy(pair["points_x_prime"])[None],
                                 matrix.float(), 32, torch.from_numpy(pair["x_prime_warp"])[None])
        assert loss.item() < (1e-3 / 32) ** 2


def test_warp_is_drawn_last_so_unwarped_pairs_are_unchanged():
    image, points = dotted_face(5)
    plain = make_pair(image, points, np.random.default_rng(3), angle=15.0, tight=70, tight_jitter=4.0,
                      flip=True, size=32)
    warped = make_pair(image, points, np.random.default_rng(3), angle=15.0, tight=70, tight_jitter=4.0,
                       flip=True, size=32, warp_sigma=0.04)
    assert not plain["x_prime_warp"].any()
    np.testing.assert_array_equal(plain["x"], warped["x"])
    np.testing.assert_array_equal(plain["x_to_x_prime"], warped["x_to_x_prime"])
    assert np.abs(plain["x_prime"].astype(int) - warped["x_prime"]).max() > 0


def test_equivariance_loss_through_a_constant_warp_by_hand():
    # identity view map; x' warped by D = (1, 0) everywhere: a point at (4, 5) on warped x' shows (5, 5)
    field = torch.zeros(1, 2, 3, 3)
    field[:, 0] = 1.0
    identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    points_x = torch.tensor([[[5.0, 5.0]]])
    assert equivariance_loss(points_x, torch.tensor([[[4.0, 5.0]]]), identity, 32, field).item() == 0.0
    # off by (3, 4) px after the warp: (5 / 32)^2
    got = equivariance_loss(points_x, torch.tensor([[[1.0, 1.0]]]), identity, 32, field).item()
    assert got == pytest.approx((5 / 32) ** 2)
