"""Tests of utils/visualize.py: points land on the right pixels, grids have the right layout."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from utils.visualize import (
    Curve,
    distinct_colors,
    draw_points,
    image_grid,
    rescale_points_px,
    save_bar_chart,
    save_line_plot,
    save_png,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.mark.parametrize("marker", ["circle", "cross"])
def test_draw_points_colours_the_points_pixel_and_leaves_the_input_alone(marker):
    image = np.zeros((32, 40, 3), np.uint8)
    # (x, y) = (column, row); 10.4, 7.6 lies in the pixel centred at column 10, row 8.
    out = draw_points(image, np.array([[5.0, 20.0], [10.4, 7.6]]), [RED, BLUE], radius=2, marker=marker)
    assert tuple(out[20, 5]) == RED  # row y = 20, column x = 5
    assert tuple(out[8, 10]) == BLUE
    assert tuple(out[5, 20]) == (0, 0, 0)  # the transposed position stays untouched
    assert out[25:, 20:].sum() == 0  # nothing drawn far away
    assert image.sum() == 0  # the input is not modified


def test_draw_points_checks_one_colour_per_point():
    with pytest.raises(ValueError, match="got 1 colours for 2 points"):
        draw_points(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2)), [RED])


def test_distinct_colors_are_distinct_and_well_separated():
    colors = distinct_colors(10)
    assert len(set(colors)) == 10
    assert all(isinstance(c, int) and 0 <= c <= 255 for color in colors for c in color)
    gaps = [np.abs(np.subtract(a, b)).max() for a, b in itertools.combinations(colors, 2)]
    assert min(gaps) >= 60


def test_image_grid_size_and_placement():
    images = [np.full((4, 6, 3), value, np.uint8) for value in (10, 20, 30)]
    grid = image_grid(images, ncols=2, pad=2)
    assert grid.shape == (2 * 4 + 3 * 2, 2 * 6 + 3 * 2, 3)
    assert (grid[2:6, 2:8] == 10).all()  # first image, top left
    assert (grid[2:6, 10:16] == 20).all()  # second image, top right
    assert (grid[8:12, 2:8] == 30).all()  # third image starts the second row
    assert (grid[8:12, 10:16] == 255).all()  # the unused cell keeps the padding colour
    assert image_grid(images, ncols=8).shape[1] == 3 * 6 + 4 * 2  # cols = min(ncols, n)


def test_rescale_points_keeps_pixel_centres_aligned():
    # Doubling the size: pixel 0 spans [-0.5, 0.5] -> [-0.5, 1.5], centre 0.5; the image centre stays central.
    out = rescale_points_px(np.array([[0.0, 63.5]]), (128, 128), (256, 256))
    np.testing.assert_allclose(out, [[0.5, 127.5]])


def test_save_png_writes_rgb_in_the_right_channel_order(tmp_path):
    image = np.zeros((3, 4, 3), np.uint8)
    image[1, 2] = (200, 30, 10)  # RGB
    save_png(tmp_path / "sub" / "x.png", image)
    back_bgr = cv2.imread(str(tmp_path / "sub" / "x.png"))
    assert np.array_equal(back_bgr[..., ::-1], image)


def test_plots_write_png_files(tmp_path):
    save_line_plot(tmp_path / "line.png", [Curve("a", [1, 10, 100], [3.0, 2.0, 1.0], [0.1, 0.1, 0.0])],
                   xlabel="N", ylabel="NME", title="t", log_x=True, xticks=[1, 10, 100],
                   xticklabels=["1", "10", "all"])
    save_bar_chart(tmp_path / "bar.png", ["a", "b"], [1.0, 2.0], ylabel="NME", title="t")
    for name in ("line.png", "bar.png"):
        assert cv2.imread(str(tmp_path / name)).shape[2] == 3
