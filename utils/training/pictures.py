"""The training picture grid: both views with their detected points, the auxiliary subject, the images
rendered on the way and the final reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from utils.geometry import EVAL_CROP_SIZE, heatmap_to_image_xy
from utils.visualize import distinct_colors, draw_points, image_grid, save_png


def to_uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, S, S) in [0, 1] -> list of (S, S, 3) uint8 RGB."""
    return list((images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))


def save_training_grid(path: Path, batch: dict, rec, aux_index: torch.Tensor, num_points: int,
                       columns: int = 8) -> np.ndarray:
    """Save and return the (H, W, 3) uint8 grid. Rows: x and x' with their detected points, the auxiliary
    subject, intermediates, reconstructions. `rec` is the step's `model.Reconstructions`; small crops are
    enlarged by whole pixels to about the evaluation crop's size."""
    colors = distinct_colors(num_points)
    n = min(columns, batch["x"].shape[0])
    size = batch["x"].shape[-1]

    def image_px(points: torch.Tensor) -> np.ndarray:  # (B, K, 2) heatmap px -> image px
        return heatmap_to_image_xy(points.detach().float().cpu()).numpy()

    def with_points(images: torch.Tensor, points: np.ndarray) -> list[np.ndarray]:
        return [draw_points(im, p, colors) for im, p in zip(to_uint8_images(images), points)]

    points_x, aux = image_px(rec.points_x), aux_index[:n].cpu()
    rows = [with_points(batch["x"][:n], points_x[:n]),
            with_points(batch["x_prime"][:n], image_px(rec.points_x_prime[:n])),
            with_points(batch["x"][aux], points_x[aux])]
    rows += [to_uint8_images(images[:n]) for images in rec.intermediates.values()]
    rows += [to_uint8_images(images[:n]) for images in rec.outputs]
    scale = max(1, EVAL_CROP_SIZE // size)
    tiles = [np.kron(im, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else im for row in rows for im in row]
    grid = image_grid(tiles, ncols=n)
    save_png(path, grid)
    return grid
