"""Smooth random (elastic) warps of a crop, for the x' view of a training pair (`data.warp_sigma`).

A warp is a displacement field D given on a coarse g x g grid of nodes over an S x S crop: node (i, j)
sits at crop pixel (x, y) = (j, i) * (S - 1) / (g - 1), pixel centres at integer coordinates, and D
between nodes is the bilinear interpolation of the nodes' values, clamped to the outermost nodes
outside them (exactly `torch.nn.functional.grid_sample` with align_corners=True and border padding,
which `losses.displacement_at` uses on the detected points).

The warped image samples the unwarped one backwards: warped(q) = image(q + D(q)). So a detected point
q of the warped image sits on the content found at q + D(q) before the warp (no inversion needed in
the loss), and an annotated point p moves to the q that solves q + D(q) = p (`warp_points`, by fixed
point iteration, which converges while D is smooth: its slope is well under 1 at the sigmas used).
"""

from __future__ import annotations

import cv2
import numpy as np


def sample_displacements(rng: np.random.Generator, grid: int, sigma_px: float) -> np.ndarray:
    """(2, grid, grid) float32 node displacements (dx, dy) in crop pixels, each N(0, sigma_px^2)."""
    return (rng.standard_normal((2, grid, grid)) * sigma_px).astype(np.float32)


def displacement_at(field: np.ndarray, points_xy: np.ndarray, size: int) -> np.ndarray:
    """D at (N, 2) crop-pixel points of an S x S crop (S = `size`) -> (N, 2); NaN rows stay NaN.

    Bilinear between the (2, g, g) `field`'s nodes, clamped to the grid's border (module docstring).
    """
    grid = field.shape[-1]
    points = np.asarray(points_xy, dtype=np.float64)
    finite = np.isfinite(points).all(axis=1)
    nodes = np.clip(np.where(finite[:, None], points, 0.0) * (grid - 1) / (size - 1), 0, grid - 1)  # (N, 2)
    lower = np.minimum(np.floor(nodes).astype(int), grid - 2)  # (N, 2) node index left/above
    frac = nodes - lower  # (N, 2) in [0, 1]
    col, row = lower[:, 0], lower[:, 1]
    fx, fy = frac[:, 0:1], frac[:, 1:2]  # (N, 1)
    corners = field.astype(np.float64).transpose(1, 2, 0)  # (g, g, 2): [row, col] -> (dx, dy)
    top = corners[row, col] * (1 - fx) + corners[row, col + 1] * fx  # (N, 2)
    bottom = corners[row + 1, col] * (1 - fx) + corners[row + 1, col + 1] * fx
    out = top * (1 - fy) + bottom * fy
    out[~finite] = np.nan
    return out


def warp_image(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(S, S, C) image warped by `field`: out(q) = image(q + D(q)), bilinear, replicated borders."""
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pixels = np.stack((xs.ravel(), ys.ravel()), axis=1)  # (S*S, 2)
    source = (pixels + displacement_at(field, pixels, size)).astype(np.float32).reshape(size, size, 2)
    return cv2.remap(image, source[..., 0], source[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warp_points(points_xy: np.ndarray, field: np.ndarray, size: int, tolerance: float = 1e-6,
                max_iterations: int = 100) -> np.ndarray:
    """Where (N, 2) crop points p land in the warped image: the q with q + D(q) = p; NaN stays NaN.

    Iterates q <- p - D(q) until no point moves more than `tolerance` pixels.
    """
    points = np.asarray(points_xy, dtype=np.float64)
    warped = points.copy()
    for _ in range(max_iterations):
        previous, warped = warped, points - displacement_at(field, warped, size)
        if not np.nanmax(np.abs(warped - previous), initial=0.0) > tolerance:
            break
    return warped.astype(np.float32)
