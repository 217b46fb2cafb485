"""The training picture grid: both views with their detected points, the auxiliary subject, the images
rendered on the way and the final reconstructions, each row labelled in the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from utils.geometry import EVAL_CROP_SIZE, heatmap_to_image_xy
from utils.visualize import add_row_labels, distinct_colors, draw_points, image_grid, save_png


POINT_ROWS = ("x: view 1 of a face,\nits detected points", "x': view 2 (warped x),\nits detected points",
              "a: the auxiliary subject\n(another face of the\nbatch), its points")
# The rendered rows, keyed by `Reconstructions.intermediates` (model.LandmarkAutoencoder.forward). Rendered on the
# way, without a loss of their own: early in training they can look like noise.
INTERMEDIATE_ROWS = {
    "x_with_aux_points": "x_a = G(x, H(a)): x's look\nwith a's points (no loss)",
    "x_prime_with_aux_points": "x'_a = G(x', H(a)): x''s\nlook with a's points (no loss)",
    "x_with_x_prime_points": "G(x, H(x')): x's look\nwith x''s points (no loss)",
    "x_prime_with_x_points": "G(x', H(x)): x''s look\nwith x's points (no loss)",
}
# The reconstruction rows of each objective, in `Reconstructions.outputs` order, told apart by its intermediates.
OUTPUT_ROWS = {
    (): ("G(x', H(x)): should\nequal x (loss)",),
    ("x_with_aux_points",): ("G(x_a, H(x')): should\nequal x' (loss)",),
    ("x_with_x_prime_points", "x_prime_with_x_points"): (
        "G(G(x', H(x)), H(x')):\nshould equal x' (loss)", "G(G(x, H(x')), H(x)):\nshould equal x (loss)"),
    ("x_with_aux_points", "x_prime_with_aux_points"): (
        "G(x'_a, H(x)): should\nequal x (loss)", "G(x_a, H(x')): should\nequal x' (loss)"),
}


def row_labels(intermediates: list[str]) -> list[str]:
    """The labels of the grid's rows, top to bottom, for a forward whose intermediates have these names."""
    return [*POINT_ROWS, *(INTERMEDIATE_ROWS[name] for name in intermediates), *OUTPUT_ROWS[tuple(intermediates)]]


def to_uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, S, S) in [0, 1] -> list of (S, S, 3) uint8 RGB."""
    return list((images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))


def save_training_grid(path: Path, batch: dict, rec, aux_index: torch.Tensor, num_points: int,
                       columns: int = 8) -> np.ndarray:
    """Save and return the (H, W, 3) uint8 grid. Rows: x and x' with their detected points, the auxiliary
    subject, intermediates, reconstructions, each labelled on the left (`row_labels`). `rec` is the step's
    `model.Reconstructions`; small crops are enlarged by whole pixels to about the evaluation crop's size."""
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
    grid = add_row_labels(image_grid(tiles, ncols=n), row_labels(list(rec.intermediates)), size * scale)
    save_png(path, grid)
    return grid
