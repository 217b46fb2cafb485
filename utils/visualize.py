"""Pictures: landmarks drawn on faces, image grids with row labels and legends, PNG files and simple plots.

Used by utils/training/pictures.py (the training grid), utils/evaluation/report.py (eval_regressor.py's
figures) and utils/plot_run.py (a run's curves); nothing here keeps state. Images are RGB uint8 arrays
(H, W, 3). Points are (x, y) in the image's own pixels with the pixel-centre convention: the centre of the
top-left pixel is (0, 0), so a point (3, 5) lies at the centre of column 3, row 5. Use `rescale_points_px`
to move points between image sizes.

Plots use matplotlib's object-oriented API with the Agg renderer (no pyplot, no global backend
switch), imported inside the functions so that importing this module stays light. Each plot function
returns its Figure, so that a test can read back what was drawn.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.files import atomic_write

RGB = tuple[int, int, int]
_SHIFT_BITS = 4  # cv2 draws at 1/16-pixel precision with shift=4
_MARKERS = ("circle", "cross")


def distinct_colors(k: int) -> list[RGB]:
    """`k` well-separated colours: evenly spaced hues on the HSV wheel at high saturation and value.

    Returns a list of k (r, g, b) tuples of Python ints in 0..255 (what cv2 drawing expects).
    """
    colors = []
    for i in range(k):
        r, g, b = colorsys.hsv_to_rgb(i / max(k, 1), 0.9, 1.0)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def rescale_points_px(
    points_xy: np.ndarray, from_wh: tuple[float, float], to_wh: tuple[float, float]
) -> np.ndarray:
    """Points in pixels of an image of size from_wh = (w, h) -> pixels of the same image resized to to_wh.

    Pixel-centre convention: p' = (p + 0.5) * to / from - 0.5. Any shape (..., 2) -> same shape, float64.
    """
    scale = np.asarray(to_wh, dtype=np.float64) / np.asarray(from_wh, dtype=np.float64)  # (2,) x, y
    return (np.asarray(points_xy, dtype=np.float64) + 0.5) * scale - 0.5


def resize_image(image_rgb: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) image to size_wh = (w, h), bilinear; returns the input if the size matches.

    Move points along with `rescale_points_px(points, (W, H), size_wh)`.
    """
    if (image_rgb.shape[1], image_rgb.shape[0]) == tuple(size_wh):
        return image_rgb
    return cv2.resize(image_rgb, tuple(size_wh), interpolation=cv2.INTER_LINEAR)


def draw_points(
    image_rgb: np.ndarray,
    points_xy: np.ndarray,
    colors: Sequence[RGB],
    radius: int = 2,
    marker: str = "circle",
) -> np.ndarray:
    """Draw landmarks on a copy of an image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image; left unchanged.
        points_xy: (K, 2) points (x, y) in this image's pixels (pixel-centre convention), sub-pixel
            positions allowed; a marker partly outside the image is clipped by the drawing, and points
            whose marker would not show (further out than `radius`, e.g. a diverged detection at 1e30)
            or that are not finite are skipped.
        colors: K (r, g, b) colours, one per point (e.g. `distinct_colors(K)`).
        radius: circle radius, or half the arm length of a cross, in pixels.
        marker: 'circle' (filled disc) or 'cross' (a '+').
    Returns:
        (H, W, 3) uint8 new image with the points drawn.
    """
    image = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)  # (K, 2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if len(colors) != len(points_xy):
        raise ValueError(f"got {len(colors)} colours for {len(points_xy)} points")
    if marker not in _MARKERS:
        raise ValueError(f"marker must be one of {_MARKERS}, got {marker!r}")
    one = 1 << _SHIFT_BITS  # one pixel in cv2's fixed-point coordinates
    height, width = image.shape[:2]
    for (x, y), color in zip(points_xy, colors):
        if not (-radius - 1 < x < width + radius and -radius - 1 < y < height + radius):  # False for NaN too
            continue
        cx, cy, r = round(x * one), round(y * one), radius * one
        color = tuple(int(c) for c in color)
        if marker == "circle":
            cv2.circle(image, (cx, cy), r, color, -1, cv2.LINE_AA, _SHIFT_BITS)
        else:
            # 1-px lines without anti-aliasing, so that the point's own pixel gets the exact colour
            cv2.line(image, (cx - r, cy), (cx + r, cy), color, 1, cv2.LINE_8, _SHIFT_BITS)
            cv2.line(image, (cx, cy - r), (cx, cy + r), color, 1, cv2.LINE_8, _SHIFT_BITS)
    return image


def draw_segments(image_rgb: np.ndarray, from_xy: np.ndarray, to_xy: np.ndarray, color: RGB) -> np.ndarray:
    """Draw a 1-px anti-aliased line from each from_xy[i] to to_xy[i] (both (K, 2), this image's pixels) on a
    copy of the image; pairs with a non-finite end are skipped. Returns the (H, W, 3) uint8 new image."""
    image = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    one = 1 << _SHIFT_BITS
    for a, b in zip(np.asarray(from_xy, np.float64).reshape(-1, 2), np.asarray(to_xy, np.float64).reshape(-1, 2)):
        if np.isfinite(a).all() and np.isfinite(b).all() and np.abs(np.r_[a, b]).max() < 1e6:
            cv2.line(image, (round(a[0] * one), round(a[1] * one)), (round(b[0] * one), round(b[1] * one)),
                     tuple(int(c) for c in color), 1, cv2.LINE_AA, _SHIFT_BITS)
    return image


def image_grid(images: Sequence[np.ndarray], ncols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized images row by row, with `pad` pixels between them and around the border.

    Args:
        images: n arrays (H, W, 3) uint8; ncols: images per row (at most n are used).
    Returns:
        (rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, 3) uint8, rows = ceil(n / cols),
        cols = min(ncols, n); unused cells keep `pad_value`.
    """
    if len(images) == 0:
        raise ValueError("image_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    h, w, c = images[0].shape
    if any(im.shape != (h, w, c) for im in images):
        raise ValueError(f"all images must share the shape {(h, w, c)}")
    cols = min(ncols, len(images))
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), pad_value, np.uint8)
    for i, im in enumerate(images):
        top = pad + (i // cols) * (h + pad)
        left = pad + (i % cols) * (w + pad)
        grid[top : top + h, left : left + w] = im
    return grid


_FONT, _FONT_SCALE, _LINE_HEIGHT = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 14  # cv2 text: 14 px per line at scale 0.4
TEXT_RGB: RGB = (0, 0, 0)


def put_text_lines(image_rgb: np.ndarray, lines: Sequence[str], left: int, top: int) -> None:
    """Write lines of text (black, 0.4 Hershey simplex, 14 px apart) in place; `top` is the top of the first line."""
    for i, line in enumerate(lines):
        cv2.putText(image_rgb, line, (left, top + (i + 1) * _LINE_HEIGHT - 4), _FONT, _FONT_SCALE, TEXT_RGB, 1,
                    cv2.LINE_AA)


def text_width(lines: Sequence[str]) -> int:
    """Width in pixels of the widest of `lines` as `put_text_lines` writes them."""
    return max((cv2.getTextSize(line, _FONT, _FONT_SCALE, 1)[0][0] for line in lines), default=0)


def add_row_labels(grid_rgb: np.ndarray, labels: Sequence[str], row_height: int, pad: int = 2) -> np.ndarray:
    """A white column on the left of an `image_grid` with one label per row ('\\n' splits a label's lines).

    grid_rgb: (H, W, 3) uint8 from `image_grid(..., pad=pad)` of rows of height `row_height`; labels: one per
    row, top to bottom. Returns (H, L + W, 3) uint8, the grid unchanged on the right, L the labels' width.
    """
    rows = (grid_rgb.shape[0] - pad) // (row_height + pad)
    if len(labels) != rows:
        raise ValueError(f"got {len(labels)} labels for {rows} rows")
    split = [label.split("\n") for label in labels]
    column = np.full((grid_rgb.shape[0], text_width([ln for lines in split for ln in lines]) + 8, 3), 255, np.uint8)
    for row, lines in enumerate(split):
        top = pad + row * (row_height + pad) + max(0, (row_height - len(lines) * _LINE_HEIGHT) // 2)
        put_text_lines(column, lines, 4, top)
    return np.concatenate([column, grid_rgb], axis=1)


LegendEntry = tuple[str, RGB, str]  # (marker: 'circle', 'cross' or 'line'; its colour; what it marks)


def add_legend(image_rgb: np.ndarray, entries: Sequence[LegendEntry], title: str = "") -> np.ndarray:
    """A white strip above an image: an optional title line, then each entry's marker (drawn as in the
    picture) followed by its text. Returns (S + H, max(W, strip width), 3) uint8, the image below, on white."""
    marker_w, gap = 14, 14
    width = max(image_rgb.shape[1], text_width([title]) + 8,
                sum(marker_w + 4 + text_width([text]) + gap for _, _, text in entries) + 4)
    strip = np.full(((2 if title else 1) * _LINE_HEIGHT + 6, width, 3), 255, np.uint8)
    if title:
        put_text_lines(strip, [title], 4, 2)
    top, left = strip.shape[0] - _LINE_HEIGHT - 2, 4
    for marker, color, text in entries:
        centre = np.array([[left + marker_w / 2, top + _LINE_HEIGHT / 2 - 1]])
        if marker == "line":
            strip = draw_segments(strip, centre - [[marker_w / 2, 0]], centre + [[marker_w / 2, 0]], color)
        else:
            strip = draw_points(strip, centre, [color], radius=3 if marker == "circle" else 5, marker=marker)
        put_text_lines(strip, [text], left + marker_w + 4, top)
        left += marker_w + 4 + text_width([text]) + gap
    below = np.full((image_rgb.shape[0], width, 3), 255, np.uint8)
    below[:, :image_rgb.shape[1]] = image_rgb
    return np.concatenate([strip, below], axis=0)


def save_png(path: str | Path, image_rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG (cv2 encodes BGR, so channels are swapped here), atomically:
    a reader never sees half a picture, and a failed write leaves the old one."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(None, "OpenCV could not encode the PNG", str(path))
    atomic_write(path, lambda f: f.write(png.tobytes()))


def save_figure(path: str | Path, fig) -> None:
    """Write a matplotlib Figure as PNG, atomically as `save_png`."""
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


@dataclass(frozen=True)
class Curve:
    """One line of `save_line_plot`: y over x (same length), with optional symmetric error bars."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    yerr: Sequence[float] | None = None
    style: str = "o-"


def save_line_plot(
    path: str | Path,
    curves: Sequence[Curve],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
    xticks: Sequence[float] | None = None,
    xticklabels: Sequence[str] | None = None,
):
    """Plot curves (with error bars where given) and a legend; save a PNG and return the matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    for curve in curves:
        ax.errorbar(curve.x, curve.y, yerr=curve.yerr, fmt=curve.style, label=curve.label, capsize=3)
    if log_x:
        ax.set_xscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks), labels=list(xticklabels) if xticklabels is not None else None)
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(path, fig)
    return fig


def save_bar_chart(
    path: str | Path, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, ylabel: str,
    title: str,
):
    """Grouped bar chart: for each label, one bar per series (name, one value per label), the first series'
    bars annotated with their values, and a legend; saved as PNG. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, list(values), width, label=name)
        if i == 0:
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, labels=list(labels))
    ax.set(ylabel=ylabel, title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    save_figure(path, fig)
    return fig
