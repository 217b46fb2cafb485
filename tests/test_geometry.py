import math

import pytest
import torch

from utils.geometry import heatmap_to_image_xy, image_to_heatmap_xy, render_gaussian_heatmaps, soft_argmax


def test_soft_argmax_of_a_peaked_map_is_the_peak():
    scores = torch.zeros(1, 1, 32, 32)
    scores[0, 0, 19, 7] = 10.0  # row y=19, column x=7
    xy = soft_argmax(scores, temperature=0.1)
    assert xy.shape == (1, 1, 2)
    assert torch.allclose(xy[0, 0], torch.tensor([7.0, 19.0]), atol=1e-3)


def test_soft_argmax_of_a_uniform_map_is_the_centre():
    xy = soft_argmax(torch.zeros(2, 3, 32, 32), temperature=0.1)
    assert torch.allclose(xy, torch.full((2, 3, 2), 15.5))


def test_soft_argmax_distinguishes_x_from_y_and_channels():
    scores = torch.full((1, 2, 16, 16), -1e4)
    scores[0, 0, 2, 11] = 0.0  # x=11, y=2
    scores[0, 1, 9, 4] = 0.0  # x=4, y=9
    xy = soft_argmax(scores, temperature=1.0)
    assert torch.allclose(xy[0], torch.tensor([[11.0, 2.0], [4.0, 9.0]]), atol=1e-4)


def test_soft_argmax_temperature_weights_two_peaks():
    # Two cells with logits 0 and log(3): at T=1 the weights are 1/4 and 3/4.
    scores = torch.full((1, 1, 8, 8), -1e4)
    scores[0, 0, 0, 0] = 0.0
    scores[0, 0, 0, 4] = math.log(3.0)
    xy = soft_argmax(scores, temperature=1.0)
    assert torch.allclose(xy[0, 0], torch.tensor([3.0, 0.0]), atol=1e-4)


def test_soft_argmax_gradients_reach_the_scores():
    scores = torch.randn(2, 4, 32, 32, requires_grad=True)
    soft_argmax(scores, 0.1).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_rendering_values_at_and_near_the_point():
    points = torch.tensor([[[7.0, 19.0]]])
    heat = render_gaussian_heatmaps(points, size=32, s=0.5)
    assert heat.shape == (1, 1, 32, 32)
    assert heat[0, 0, 19, 7].item() == pytest.approx(1.0)
    assert heat[0, 0, 19, 8].item() == pytest.approx(math.exp(-2.0), rel=1e-5)  # 1 px right
    assert heat[0, 0, 20, 7].item() == pytest.approx(math.exp(-2.0), rel=1e-5)  # 1 px down
    assert heat[0, 0, 20, 8].item() == pytest.approx(math.exp(-4.0), rel=1e-5)  # diagonal, d^2 = 2
    assert heat[0, 0, 19, 7] == heat.max()


def test_rendering_a_subpixel_point():
    heat = render_gaussian_heatmaps(torch.tensor([[[3.5, 4.0]]]), size=8, s=0.5)
    assert heat[0, 0, 4, 4].item() == pytest.approx(math.exp(-0.25 / 0.5), rel=1e-5)
    assert heat[0, 0, 4, 3].item() == pytest.approx(heat[0, 0, 4, 4].item(), rel=1e-6)


def test_points_heatmaps_points_round_trip():
    points = torch.tensor([[[8.3, 20.7], [16.0, 9.25], [22.9, 23.1]]])
    heat = render_gaussian_heatmaps(points, size=32, s=2.0)  # sigma = 1 px, 8 px from the border: negligible bias
    recovered = soft_argmax(torch.log(heat), temperature=1.0)
    assert torch.allclose(recovered, points, atol=1e-3)


def test_rendering_is_differentiable_in_the_points():
    points = torch.tensor([[[5.3, 20.7]]], requires_grad=True)
    render_gaussian_heatmaps(points, 32, 0.5)[0, 0, 21, 5].backward()
    assert points.grad.abs().sum() > 0


def test_heatmap_image_conversion():
    # Cell 0 of a stride-4 grid covers image pixels 0..3, centre 1.5; cell 31 -> 125.5.
    hm = torch.tensor([[0.0, 31.0]])
    assert torch.allclose(heatmap_to_image_xy(hm, 4), torch.tensor([[1.5, 125.5]]))
    assert torch.allclose(image_to_heatmap_xy(heatmap_to_image_xy(hm, 4), 4), hm)


def test_soft_argmax_moments_by_hand():
    from utils.geometry import soft_argmax_moments

    scores = torch.full((1, 1, 3, 3), -1e4)
    scores[0, 0, 0, 0] = scores[0, 0, 0, 2] = 0.0  # half the mass at (0, 0), half at (2, 0)
    points, variance = soft_argmax_moments(scores, temperature=1.0)
    assert torch.allclose(points, torch.tensor([[[1.0, 0.0]]])) and torch.allclose(variance, torch.tensor([[1.0]]))
    peaked = torch.full((1, 1, 4, 4), -1e4)
    peaked[0, 0, 2, 1] = 0.0
    points, variance = soft_argmax_moments(peaked, temperature=1.0)
    assert torch.allclose(points, torch.tensor([[[1.0, 2.0]]])) and variance.abs().item() < 1e-6
    flat = torch.zeros(1, 1, 4, 4)  # uniform over 4 x 4: var = 2 * (16 - 1) / 12
    assert torch.allclose(soft_argmax_moments(flat, 1.0)[1], torch.tensor([[2.5]]))
    assert torch.equal(soft_argmax_moments(flat, 1.0)[0], soft_argmax(flat, 1.0))
