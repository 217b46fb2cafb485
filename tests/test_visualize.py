"""Tests of utils/visualize.py: points land on the right pixels, grids have the right layout, labels and
legends sit beside the pictures they explain, plots hold the data they were given."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from utils.visualize import (
    Curve,
    add_legend,
    add_row_labels,
    distinct_colors,
    draw_points,
    draw_segments,
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


def test_row_labels_go_in_a_column_left_of_an_unchanged_grid_one_per_row():
    images = [np.full((10, 12, 3), 100, np.uint8)] * 6
    grid = image_grid(images, ncols=2, pad=2)  # 3 rows of height 10
    labelled = add_row_labels(grid, ["first", "second\ntwo lines", "third"], row_height=10, pad=2)
    width = labelled.shape[1] - grid.shape[1]
    assert width > 20 and labelled.shape[0] == grid.shape[0]
    assert np.array_equal(labelled[:, width:], grid)
    column = labelled[:, :width]
    for row in range(3):  # each row's band of the label column has text in it
        top = 2 + row * 12
        assert (column[top:top + 10] < 128).any(), row
    with pytest.raises(ValueError, match="got 2 labels for 3 rows"):
        add_row_labels(grid, ["a", "b"], row_height=10, pad=2)


def test_a_legend_strip_sits_above_the_image_with_each_marker_in_its_colour():
    image = np.full((20, 300, 3), 90, np.uint8)
    out = add_legend(image, [("circle", RED, "annotated"), ("cross", BLUE, "regressed")], title="faces")
    strip = out[:out.shape[0] - 20]
    assert np.array_equal(out[-20:, :300], image) and strip.shape[0] > 14
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    assert RED in colours and BLUE in colours and (0, 0, 0) not in {tuple(c) for c in image.reshape(-1, 3)}
    assert (strip < 50).all(axis=2).any()  # black text


def test_draw_segments_joins_the_two_points():
    out = draw_segments(np.zeros((10, 20, 3), np.uint8), np.array([[2.0, 5.0]]), np.array([[17.0, 5.0]]), RED)
    assert (out[5, 3:17, 0] > 200).all() and out[0:3].sum() == 0


def test_plots_write_png_files_and_hold_the_data_given(tmp_path):
    fig = save_line_plot(tmp_path / "line.png", [Curve("a", [1, 10, 100], [3.0, 2.0, 1.0], [0.1, 0.1, 0.0])],
                         xlabel="N", ylabel="NME", title="t", log_x=True, xticks=[1, 10, 100],
                         xticklabels=["1", "10", "all"])
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["a"] and list(handles[0][0].get_ydata()) == [3.0, 2.0, 1.0]
    fig = save_bar_chart(tmp_path / "bar.png", ["a", "b"], [("ours", [1.0, 2.0]), ("base", [3.0, 4.0])],
                         ylabel="NME", title="t")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["ours", "base"]
    assert [[bar.get_height() for bar in container] for container in handles] == [[1.0, 2.0], [3.0, 4.0]]
    for name in ("line.png", "bar.png"):
        assert cv2.imread(str(tmp_path / name)).shape[2] == 3


def test_a_picture_that_fails_half_written_leaves_the_old_one_and_no_temporary_file(tmp_path, monkeypatch):
    old = np.full((3, 4, 3), 7, np.uint8)
    save_png(tmp_path / "x.png", old)
    save_line_plot(tmp_path / "line.png", [Curve("a", [1, 2], [1.0, 2.0])], xlabel="x", ylabel="y", title="t")
    old_plot = (tmp_path / "line.png").read_bytes()

    def half_then_full_disk(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", half_then_full_disk)
    with pytest.raises(OSError, match="line.png"):
        save_line_plot(tmp_path / "line.png", [Curve("b", [1, 2], [2.0, 1.0])], xlabel="x", ylabel="y", title="t")
    monkeypatch.setattr(cv2, "imencode", lambda ext, img: (False, None))
    with pytest.raises(OSError, match="x.png"):
        save_png(tmp_path / "x.png", np.zeros((3, 4, 3), np.uint8))
    assert (tmp_path / "line.png").read_bytes() == old_plot
    assert np.array_equal(cv2.imread(str(tmp_path / "x.png")), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.png", "x.png"]
