"""Landmark geometry on tensors: score maps -> points -> Gaussian heatmaps, and unit conversions.

These are the bottleneck of the model as small pure functions. They are
differentiable, work on any device and dtype, and keep no state.

Shape legend: B batch, K landmarks, H x W heatmap size.

Coordinate convention, used everywhere in this repository:
- points are (x, y), x the column and y the row;
- "heatmap pixels" are indices on the H x W grid: the centre of the top-left cell is (0, 0);
- "image pixels" are indices on the input image, with the same centre-of-pixel convention;
- one heatmap cell covers `stride = image_size / heatmap_size` image pixels, so the centre of
  cell i is at image pixel (i + 0.5) * stride - 0.5 (`heatmap_to_image_xy`). The reference
  multiplies by 4 and ignores the half-pixel offset; the regressor is affine, so NME is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

HEATMAP_STRIDE = 4  # image side / heatmap side: the detector's two stride-2 stages (model.FAN)
EVAL_CROP_SIZE = 128  # detections and annotations are saved in pixels of a 128 x 128 evaluation crop


def input_size_multiple(hourglass_depth: int) -> int:
    """The crop sides a detector with `hourglass_depth` levels accepts are multiples of this.

    The heatmap is the image / HEATMAP_STRIDE and each hourglass level halves it once more, so the side
    must divide by HEATMAP_STRIDE * 2^depth: 16 for depth 2, 64 for the reference's depth 4.
    """
    return HEATMAP_STRIDE * 2**hourglass_depth


def soft_argmax(scores: Tensor, temperature: float = 0.1) -> Tensor:
    """Expected (x, y) position of each score map under a softmax with temperature.

    p_k(i, j) = softmax over all H*W cells of scores_k(i, j) / temperature;
    x_k = sum p_k(i, j) * j and y_k = sum p_k(i, j) * i.

    Args:
        scores: (B, K, H, W) raw detector scores.
        temperature: softmax temperature T; smaller is peakier (the paper uses 0.1).
    Returns:
        (B, K, 2) points (x, y) in heatmap pixels, in float32 or the input's wider dtype.
    """
    return soft_argmax_moments(scores, temperature)[0]


def soft_argmax_moments(scores: Tensor, temperature: float = 0.1) -> tuple[Tensor, Tensor]:
    """`soft_argmax`'s points and the spread of each softmax map about them.

    Returns ((B, K, 2) points (x, y), (B, K) variance var_x + var_y), both in heatmap pixels (squared).
    A flat map has a large variance, and its expected position is pulled towards the map's centre by an
    amount that depends on how flat it is; the concentration term (losses.py) keeps it small.
    Example (by hand): all mass split evenly between cells (0, 0) and (2, 0) gives the point (1, 0) and
    variance 1.
    """
    b, k, h, w = scores.shape
    dtype = torch.promote_types(scores.dtype, torch.float32)  # bf16 scores: softmax in fp32
    prob = torch.softmax(scores.to(dtype).reshape(b, k, h * w) / temperature, dim=-1)
    prob = prob.reshape(b, k, h, w)  # (B, K, H, W), sums to 1 per map
    cols = torch.arange(w, device=scores.device, dtype=dtype)  # (W,)
    rows = torch.arange(h, device=scores.device, dtype=dtype)  # (H,)
    marginal_x, marginal_y = prob.sum(dim=2), prob.sum(dim=3)  # (B, K, W), (B, K, H)
    x = (marginal_x * cols).sum(dim=-1)  # (B, K): marginal over rows, then E[j]
    y = (marginal_y * rows).sum(dim=-1)  # (B, K): marginal over columns, then E[i]
    variance = (marginal_x * cols**2).sum(dim=-1) - x**2 + (marginal_y * rows**2).sum(dim=-1) - y**2  # (B, K)
    return torch.stack((x, y), dim=-1), variance  # (B, K, 2), (B, K)


def render_gaussian_heatmaps(points_xy: Tensor, size: int, s: float = 0.5) -> Tensor:
    """Draw each point as an unnormalised isotropic Gaussian exp(-d^2 / s) on a size x size grid.

    `s` plays the role of 2 sigma^2 (the reference's "sigma" flag, 0.5 by default, i.e. sigma = 0.5
    heatmap pixels). The value at the point itself is 1.

    Args:
        points_xy: (B, K, 2) points (x, y) in heatmap pixels.
        size: heatmap side H = W.
        s: spread; the value at distance d from the point is exp(-d^2 / s).
    Returns:
        (B, K, size, size) heatmaps in the dtype of `points_xy`.
    """
    grid = torch.arange(size, device=points_xy.device, dtype=points_xy.dtype)  # (S,)
    dx2 = (grid.view(1, 1, 1, size) - points_xy[..., 0, None, None]) ** 2  # (B, K, 1, S)
    dy2 = (grid.view(1, 1, size, 1) - points_xy[..., 1, None, None]) ** 2  # (B, K, S, 1)
    return torch.exp(-(dx2 + dy2) / s)  # (B, K, S, S)


def heatmap_to_image_xy(points_xy: Tensor, stride: float = HEATMAP_STRIDE) -> Tensor:
    """Heatmap pixels -> image pixels (centre-of-cell convention). Any shape (..., 2)."""
    return (points_xy + 0.5) * stride - 0.5


def image_to_heatmap_xy(points_xy: Tensor, stride: float = HEATMAP_STRIDE) -> Tensor:
    """Image pixels -> heatmap pixels; the inverse of `heatmap_to_image_xy`. Any shape (..., 2)."""
    return (points_xy + 0.5) / stride - 0.5


def heatmap_to_fraction_xy(points_xy: Tensor, image_size: int, stride: float = HEATMAP_STRIDE) -> Tensor:
    """Heatmap pixels -> fractions of the image side, x * stride / image_size (the cell index scaled, no
    centre offset: the landmark terms only use differences of points). Any shape (..., 2)."""
    return points_xy * (stride / image_size)
