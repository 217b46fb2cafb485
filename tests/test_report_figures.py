"""The report's figures are drawn from the report's own numbers, labelled with the data set the detections came
from: the mean-shape line is the table's value, every --compare row has its curve and bars, ticks do not
collide, and synthetic detections are never called MAFL nor shown beside the paper's MAFL rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from utils.evaluation.detections import Detections
from utils.evaluation.protocol import EvalConfig, data_source, evaluate
from utils.evaluation.report import (ANNOTATED_RGB, REGRESSED_RGB, fewshot_plot, format_markdown, per_landmark_plot,
                                     faces_picture)

FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2)


def detections(n: int, split: str, seed: int, k: int = 4, settings: dict | None = None, preview: int = 0,
               noise: float = 0.3) -> Detections:
    """n faces: annotated points scattered around FACE_XY_PX, K detected points a noisy linear map of them."""
    rng = np.random.default_rng(seed)
    annotated = FACE_XY_PX + rng.normal(scale=4.0, size=(n, 5, 2))  # (n, 5, 2)
    mixing = np.random.default_rng(99).normal(size=(2 * k, 10)) / 5  # (2K, 10)
    detected = 64 + (annotated.reshape(n, 10) - 64) @ mixing.T + rng.normal(scale=noise, size=(n, 2 * k))
    images = np.full((preview, 128, 128, 3), 60, np.uint8) if preview else None
    return Detections(f"{split}.npz", detected.reshape(n, k, 2), annotated, np.array([f"{seed}-{i}" for i in range(n)]),
                      split, "runs/x/last.pt", settings or {}, images)


def report_of(settings: dict | None = None, paper_table: str = "auto", n_train: int = 5400):
    train, test = detections(n_train, "mafl-train", 1, settings=settings), detections(50, "mafl-test", 2, preview=3,
                                                                                     settings=settings)
    untrained = (detections(n_train, "mafl-train", 1, noise=8.0), detections(50, "mafl-test", 2, noise=8.0))
    cfg = EvalConfig(Path("a"), Path("b"), Path("c"), repeats=3, paper_table=paper_table, label="ours")

    class Comparison:  # the fields of utils.evaluation.detections.Comparison the protocol reads
        label, train, test, folder = "untrained detector", *untrained, "runs/x/detections-init"

    report, fits = evaluate(train, test, "mafl", cfg, [Comparison])
    return report, fits, test


def legend(fig) -> dict:
    handles, labels = fig.axes[0].get_legend_handles_labels()
    return dict(zip(labels, handles))


@pytest.fixture(scope="module")
def mafl():
    return report_of()


def test_the_mean_shape_line_and_every_curve_are_the_tables_numbers(mafl, tmp_path):
    report, _, _ = mafl
    fig = fewshot_plot(report, tmp_path / "nme_vs_n.png")
    lines = legend(fig)
    table = format_markdown(report, [])
    mean_shape = float(re.search(r"\| mean training shape \|  \| ([\d.]+) \|", table).group(1))
    line = lines["mean training shape (fwd, no detector)"]
    assert np.allclose(line[0].get_ydata(), mean_shape, atol=0.005)  # the table rounds to 2 decimals
    ours = [e["fwd"]["mean_percent"] for e in report["fewshot"]]
    assert np.allclose(lines["ours, fwd"][0].get_ydata(), ours)
    untrained = next(row for row in report["baselines"] if row["label"] == "untrained detector")
    assert np.allclose(lines["untrained detector, fwd"][0].get_ydata(),
                       [e["fwd"]["mean_percent"] for e in untrained["fewshot"]])
    assert untrained["fewshot"][-1]["fwd"]["mean_percent"] == pytest.approx(untrained["main"]["fwd"]["nme_percent"])
    assert any(label.startswith("paper Ours K=10") for label in lines)  # MAFL detections: beside Table II


def test_the_ticks_are_readable_with_5000_next_to_all(mafl, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    report, _, _ = mafl
    fig = fewshot_plot(report, tmp_path / "nme_vs_n.png")
    renderer = FigureCanvasAgg(fig).get_renderer()
    ticks = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in ticks][-2:] == ["5000", "all\n(5400)"]
    boxes = [t.get_window_extent(renderer) for t in ticks]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), "tick labels overlap"


def test_per_landmark_bars_hold_ours_and_every_baseline(mafl, tmp_path):
    report, _, _ = mafl
    bars = legend(per_landmark_plot(report, tmp_path / "per_landmark.png"))
    assert list(bars) == ["ours", "untrained detector", "mean training shape"]
    rows = {row["label"]: row for row in report["baselines"]}
    for label, container in bars.items():
        values = (report["main"] if label == "ours" else rows[label]["main"])["fwd"]["per_landmark_percent"]
        assert [bar.get_height() for bar in container] == pytest.approx(list(values.values()))


def test_test_faces_tells_annotated_from_regressed_and_has_a_legend(mafl):
    report, fits, test = mafl
    far = test.annotated_xy_px[:3] + [20.0, 0.0]  # regressed points 20 px right of the annotated ones
    picture = faces_picture(test, far, "MAFL")
    grid_height = 128 + 2 * 2
    legend_strip, grid = picture[:-grid_height], picture[-grid_height:]
    x, y = np.round(test.annotated_xy_px[0, 0]).astype(int) + 2  # first face, left eye; 2 px padding
    assert tuple(grid[y, x]) == ANNOTATED_RGB
    assert tuple(grid[y, x + 20]) == REGRESSED_RGB
    colours = {tuple(c) for c in legend_strip.reshape(-1, 3)}
    assert ANNOTATED_RGB in colours and REGRESSED_RGB in colours


def test_synthetic_detections_are_called_synthetic_and_never_set_beside_the_paper(tmp_path):
    report, _, _ = report_of({"synthetic": True}, paper_table="mafl", n_train=300)
    assert report["data"] == "synthetic" and report["paper_table"] == "none"
    table = format_markdown(report, [])
    title, header = table.splitlines()[0], next(line for line in table.splitlines() if line.startswith("| method | K"))
    assert title == "# Landmark regression: synthetic, K=4" and "synthetic fwd NME" in header
    assert "MAFL" not in title + header and "3.08" not in table and "paper Table" not in table
    assert "The paper's MAFL numbers are left out: these detections are of synthetic faces" in table
    fig = fewshot_plot(report, tmp_path / "nme_vs_n.png")
    assert fig.axes[0].get_title().startswith("synthetic") and not any(k.startswith("paper") for k in legend(fig))


def test_the_synthetic_marker_is_read_from_the_settings_or_for_older_files_from_the_data_root(tmp_path):
    from datasets.synthetic import MANIFEST

    (tmp_path / MANIFEST).write_text("{}\n")
    assert data_source(detections(3, "mafl-test", 0, settings={"synthetic": True}), "mafl") == "synthetic"
    assert data_source(detections(3, "mafl-test", 0, settings={"synthetic": False}), "mafl") == "mafl"
    assert data_source(detections(3, "mafl-test", 0, settings={"data_root": str(tmp_path)}), "mafl") == "synthetic"
    assert data_source(detections(3, "mafl-test", 0, settings={"data_root": str(tmp_path / "x")}), "mafl") == "mafl"
