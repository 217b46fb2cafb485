"""The evaluation report: the Markdown tables (ours beside the paper's Tables I and II, the collapse
measures), the long-form CSV, and the PNG figures (drawn with utils/visualize.py), written by
`write_outputs` from the report dict of `utils.evaluation.protocol.evaluate`: the tables first, then the
figures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from utils.evaluation import paper_results
from utils.errors import UserError
from utils.evaluation.detections import Detections
from utils.files import atomic_write, os_reason
from utils.geometry import EVAL_CROP_SIZE
from utils.landmarks import LANDMARK_NAMES, landmark_label
from utils.metrics import collapse_warning

PREVIEW_MIN_SIDE = EVAL_CROP_SIZE  # preview faces are upscaled to at least this side for drawing


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _mean_std(stats: dict) -> str:
    std = stats["std_percent"]
    return _pct(stats["mean_percent"]) + ("" if std is None else f" ± {std:.2f}")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return lines[:1] + ["|" + "---|" * len(header)] + lines[1:]


def format_markdown(report: dict, notes: list[str]) -> str:
    """The human report: main table beside the paper's Table I, then the few-shot table."""
    modes = list(report["main"])
    train, test = report["files"]["train"], report["files"]["test"]
    name = report["dataset"].upper()
    settings, check = report["settings"], report["solver_check"]
    lines = [
        f"# Landmark regression: {name}, K={report['k']}",
        "",
        f"- train: `{train['path']}` ({train['split']}, {train['images']} images); "
        f"test: `{test['path']}` ({test['split']}, {test['images']} images)",
        f"- checkpoint: `{train['checkpoint']}`",
        f"- ridge: reg={settings['reg']:g} (× max entry of XᵀX), bias={settings['bias']}, "
        f"solver={settings['solver']}; NME in % of the inter-ocular distance (eye centres)",
        f"- cross-check ({check['mode']}, {' vs '.join(check['solvers'])}): max point difference "
        f"{check['max_abs_point_diff_px']:.2e} px, NME difference {check['nme_diff_percent']:.2e} %",
        "",
        f"## Test NME, regressor fit on all {train['images']} training images",
        "",
    ]
    header = ["method", "K", *[f"{name} {m} NME (%)" for m in modes], "source"]
    rows = [[f"**{report['label']}**", str(report["k"]),
             *[f"**{_pct(report['main'][m]['nme_percent'])}**" for m in modes], "this run"]]
    for row in report["baselines"]:
        rows.append([row["label"], "" if row["k"] is None else str(row["k"]),
                     *[_pct(row["main"][m]["nme_percent"]) if m in row["main"] else "" for m in modes],
                     row["source"]])
    if report["paper_table"] != "none":
        for method, k, value in paper_results.table_i(report["paper_table"]):
            fwd_cells = [_pct(value) if m == "fwd" else "" for m in modes]
            rows.append([method, "" if k is None else str(k), *fwd_cells, "paper Table I"])
    lines += _md_table(header, rows)
    lines += ["", f"'mean training shape' predicts every test face as the mean of the {train['images']} "
              "annotated training shapes (forward only, no detector): the error to beat."]
    lines += collapse_section(report)
    if report["fewshot"]:
        first = report["fewshot"][0]
        lines += ["", f"## Few-shot: test NME (%) with N training images "
                  f"(mean ± std over {first['draws']} seeded draws; 'all' is one fit)", ""]
        paper_cols = list(paper_results.TABLE_II) if "paper" in first else []
        header = ["N", "images per draw", *[f"ours {m}" for m in modes], *[f"paper {c}" for c in paper_cols]]
        rows = [
            [str(e["size"]), str(e["images_per_draw"]), *[_mean_std(e[m]) for m in modes],
             *[_pct(e["paper"][c]) for c in paper_cols]]
            for e in report["fewshot"]
        ]
        lines += _md_table(header, rows)
    if report["paper_table"] != "none":
        lines += ["", f"Paper numbers: {report['paper_source']}."]
    lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def collapse_section(report: dict) -> list[str]:
    """Markdown lines: the collapse measures of each detector on the test split, and a warning if due."""
    measured = [(report["label"], report["collapse"])] + [
        (row["label"], row["collapse"]) for row in report["baselines"] if "collapse" in row] + [
        ("annotated points (reference)", report["collapse_annotated"])]
    header = ["method", "spread", "distinct landmarks", "closest pair (IOD)", "part lock"]
    rows = [[label, f"{c['spread']:.2f}", f"{c['distinct']} of {c['num_points']}", f"{c['closest_pair']:.2f}",
             f"{c['part_lock']:.2f}"] for label, c in measured]
    lines = ["", "## Do the detected points spread over the face and follow its parts? (test split)", ""]
    lines += _md_table(header, rows)
    lines += ["", "spread: RMS radius of the detected points over that of the annotated ones (median over faces; "
              "0 = one blob). distinct: landmarks whose mean position is more than 0.05 IOD from every other's. "
              "part lock: wander of each point in the face frame over that of a point fixed in the crop "
              "(median over landmarks; 0 = rides on a face part, 1 = ignores the face; the annotated points' own score, "
              "last row, is the floor a detector can hope for on these faces)."]
    warning = collapse_warning(report["collapse"])
    return lines + (["", f"**Warning:** {warning}."] if warning else [])


CSV_FIELDS = (
    "table", "method", "k", "size", "images", "mode", "nme_percent", "std_percent", "draws", "source",
)


def csv_rows(report: dict) -> list[dict]:
    """The report in long form: one row per (table, method, size, mode)."""
    k, n_train = report["k"], report["files"]["train"]["images"]
    rows = [
        {"table": "main", "method": report["label"], "k": k, "size": "all", "images": n_train, "mode": mode,
         "nme_percent": stats["nme_percent"], "draws": 1, "source": "this run"}
        for mode, stats in report["main"].items()
    ]
    rows += [
        {"table": "main", "method": row["label"], "k": row["k"], "size": "all", "images": row["images"],
         "mode": mode, "nme_percent": stats["nme_percent"], "draws": 1, "source": row["source"]}
        for row in report["baselines"]
        for mode, stats in row["main"].items()
    ]
    if report["paper_table"] != "none":
        rows += [
            {"table": "main", "method": method, "k": k_paper, "mode": "fwd", "nme_percent": value,
             "source": "paper Table I"}
            for method, k_paper, value in paper_results.table_i(report["paper_table"])
        ]
    for entry in report["fewshot"]:
        for mode in report["main"]:
            stats = entry[mode]
            rows.append({"table": "fewshot", "method": report["label"], "k": k, "size": entry["size"],
                         "images": entry["images_per_draw"], "mode": mode, "nme_percent": stats["mean_percent"],
                         "std_percent": stats["std_percent"], "draws": entry["draws"], "source": "this run"})
        for column, value in entry.get("paper", {}).items():
            if value is not None:
                rows.append({"table": "fewshot", "method": column, "size": entry["size"], "mode": "fwd",
                             "nme_percent": value, "source": "paper Table II"})
    return rows


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


Figure = tuple[str, Callable[[Path], None] | None]  # (note for results.md, draw into the output folder or None)


def figure_plan(report: dict, fits: dict, test: Detections) -> list[Figure]:
    """The figures of a report, each a note and the function that draws it (None when it is skipped); nothing
    is drawn here, so the notes can go into results.md before any figure is attempted."""
    from utils import visualize as vis

    figures: list[Figure] = []
    if report["fewshot"]:
        figures.append(("nme_vs_n.png: test NME vs N (mean ± std over draws)",
                        lambda out_dir: _fewshot_plot(report, out_dir / "nme_vs_n.png")))
    fwd = fits.get("fwd")
    if fwd is None:
        return figures + [("per_landmark.png and test_faces.png skipped: they need --mode fwd or both", None)]
    per_landmark = report["main"]["fwd"]["per_landmark_percent"]
    figures.append(("per_landmark.png: forward error per annotated landmark", lambda out_dir: vis.save_bar_chart(
        out_dir / "per_landmark.png", list(per_landmark), list(per_landmark.values()), ylabel="test NME (% IOD)",
        title="forward error per annotated landmark")))
    if test.preview_images is None:
        return figures + [(f"test_faces.png skipped: {test.path} has no 'preview_images'", None)]
    colors, point_colors = vis.distinct_colors(len(LANDMARK_NAMES)), vis.distinct_colors(test.k)

    def faces(discs: np.ndarray, crosses: np.ndarray | None, face_colors: list) -> np.ndarray:
        return vis.image_grid([preview_face(image, discs[i], None if crosses is None else crosses[i], face_colors)
                               for i, image in enumerate(test.preview_images)], ncols=8)

    figures.append((f"test_faces.png: first {len(test.preview_images)} test faces; discs = annotated, crosses = "
                    f"regressed (forward); colours follow {', '.join(map(landmark_label, LANDMARK_NAMES))}",
                    lambda out_dir: vis.save_png(out_dir / "test_faces.png",
                                                 faces(test.annotated_xy_px, fwd.pred_xy_px, colors))))
    figures.append((f"test_points.png: the same faces with the raw {test.k} detected points, one colour per "
                    "landmark: each colour should sit on the same face part on every face",
                    lambda out_dir: vis.save_png(out_dir / "test_points.png",
                                                 faces(test.detected_xy_px, None, point_colors))))
    return figures


def _fewshot_plot(report: dict, path: Path) -> None:
    """nme_vs_n.png: our few-shot curve per mode (mean ± std over draws), and the paper's on MAFL."""
    from utils import visualize as vis

    n_train = report["files"]["train"]["images"]
    x = [n_train if e["size"] == "all" else e["size"] for e in report["fewshot"]]
    curves = [
        vis.Curve(f"ours {mode}", x, [e[mode]["mean_percent"] for e in report["fewshot"]],
                  [e[mode]["std_percent"] or 0.0 for e in report["fewshot"]])
        for mode in report["main"]
    ]
    ticks = {n: f"all\n({n})" if s == "all" else str(n) for n, s in zip(x, report["settings"]["sizes"])}
    if report["paper_table"] == "mafl":
        column, sizes = paper_results.TABLE_II_OURS, paper_results.TABLE_II_SIZES
        paper_x = [paper_results.TABLE_II_ALL_IMAGES if s == "all" else s for s in sizes]
        curves.append(vis.Curve(f"paper {column}", paper_x,
                                [paper_results.table_ii(column, s) for s in sizes], style="s--"))
        ticks = {n: str(n) for n in paper_x[:-1]} | {paper_x[-1]: f"paper all\n({paper_x[-1]})"} | ticks
    vis.save_line_plot(path, curves, xlabel="N training images for the regressor", ylabel="test NME (% IOD)",
                       title=f"{report['dataset'].upper()} few-shot", log_x=True, xticks=sorted(ticks),
                       xticklabels=[ticks[n] for n in sorted(ticks)])


def preview_face(
    image_rgb: np.ndarray, disc_xy_px: np.ndarray, cross_xy_px: np.ndarray | None, colors: list
) -> np.ndarray:
    """One preview crop, upscaled to at least PREVIEW_MIN_SIDE, with discs (e.g. annotated points) and
    crosses (e.g. regressed points; None for none).

    image_rgb: (S, S, 3) uint8 crop; disc_xy_px, cross_xy_px: (len(colors), 2) in 128-px crop pixels.
    """
    from utils import visualize as vis

    h, w = image_rgb.shape[:2]
    scale = max(1.0, PREVIEW_MIN_SIDE / min(h, w))
    size_wh = (round(w * scale), round(h * scale))
    face = vis.resize_image(image_rgb, size_wh)
    crop_wh = (EVAL_CROP_SIZE, EVAL_CROP_SIZE)
    face = vis.draw_points(face, vis.rescale_points_px(disc_xy_px, crop_wh, size_wh), colors, radius=2,
                           marker="circle")
    if cross_xy_px is None:
        return face
    return vis.draw_points(face, vis.rescale_points_px(cross_xy_px, crop_wh, size_wh), colors, radius=3,
                           marker="cross")


def write_outputs(report: dict, fits: dict, test: Detections, out_dir: Path) -> str:
    """Write results.md/.json/.csv, then the figures, into out_dir; return the Markdown text.

    The tables go first, so a figure that cannot be drawn loses no number. A failed write (a full disk)
    is a one-line UserError naming the file.
    """
    figures = figure_plan(report, fits, test)
    markdown = format_markdown(report, [note for note, _ in figures])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_text(out_dir / "results.md", markdown)
        _write_text(out_dir / "results.json", json.dumps(report, indent=2) + "\n")
        _write_text(out_dir / "results.csv", buffer.getvalue())
        for _, draw in figures:
            if draw is not None:
                draw(out_dir)
    except OSError as exc:
        written = sorted(p.name for p in out_dir.glob("results.*")) if out_dir.is_dir() else []
        raise UserError(f"{exc.filename or out_dir}: cannot write ({os_reason(exc)}); written before it: "
                        f"{', '.join(written) or 'nothing'}; make room (or choose --out), then run again") from None
    return markdown
