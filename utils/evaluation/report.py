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
from utils.evaluation.protocol import MEAN_SHAPE_SOURCE
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
    name = data_title(report)
    settings, check = report["settings"], report["solver_check"]
    lines = [
        f"# Landmark regression: {name}, K={report['k']}",
        "",
        f"- data: {data_description(report)}",
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
    elif report["paper_asked"] in paper_results.TABLE_I_DATASETS:
        lines += ["", f"The paper's {report['paper_asked'].upper()} numbers are left out: these detections are of "
                  f"{'synthetic faces' if report['data'] == 'synthetic' else name}, and the paper's rows are shown "
                  "only beside the data set they are for."]
    lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def data_title(report: dict) -> str:
    """What the detections are of, for titles and columns: 'synthetic', or the data set ('MAFL', 'AFLW', 'MTFL')."""
    return "synthetic" if report["data"] == "synthetic" else report["dataset"].upper()


def data_description(report: dict) -> str:
    """One line naming the data set the detections came from, and the splits' layout when it is not its own."""
    if report["data"] == "synthetic":
        return (f"synthetic faces (`python -m datasets.synthetic`), in the {report['dataset'].upper()} layout: "
                f"splits {report['dataset']}-*, no real face")
    return f"{report['dataset'].upper()}"


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
    for method, k_row, entries, source in fewshot_series(report):
        for entry in entries:
            for mode in report["main"]:
                stats = entry[mode]
                rows.append({"table": "fewshot", "method": method, "k": k_row, "size": entry["size"],
                             "images": entry["images_per_draw"], "mode": mode, "nme_percent": stats["mean_percent"],
                             "std_percent": stats["std_percent"], "draws": entry["draws"], "source": source})
    for entry in report["fewshot"]:
        for column, value in entry.get("paper", {}).items():
            if value is not None:
                rows.append({"table": "fewshot", "method": column, "size": entry["size"], "mode": "fwd",
                             "nme_percent": value, "source": "paper Table II"})
    return rows


def fewshot_series(report: dict) -> list[tuple[str, int, list[dict], str]]:
    """(method, K, few-shot entries, source) of our row, then of each --compare row that has them."""
    return [(report["label"], report["k"], report["fewshot"], "this run")] + [
        (row["label"], row["k"], row["fewshot"], row["source"]) for row in report["baselines"] if row.get("fewshot")]


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


Figure = tuple[str, Callable[[Path], None] | None]  # (note for results.md, draw into the output folder or None)


ANNOTATED_RGB, REGRESSED_RGB = (0, 230, 0), (255, 30, 30)  # test_faces.png: green discs, red crosses


def figure_plan(report: dict, fits: dict, test: Detections) -> list[Figure]:
    """The figures of a report, each a note and the function that draws it (None when it is skipped); nothing
    is drawn here, so the notes can go into results.md before any figure is attempted."""
    from utils import visualize as vis

    figures: list[Figure] = []
    if report["fewshot"]:
        figures.append(("nme_vs_n.png: test NME vs N (mean ± std over draws), every row of the main table",
                        lambda out_dir: fewshot_plot(report, out_dir / "nme_vs_n.png")))
    fwd = fits.get("fwd")
    if fwd is None:
        return figures + [("per_landmark.png and test_faces.png skipped: they need --mode fwd or both", None)]
    figures.append(("per_landmark.png: forward error per annotated landmark, ours beside the baselines",
                    lambda out_dir: per_landmark_plot(report, out_dir / "per_landmark.png")))
    if test.preview_images is None:
        return figures + [(f"test_faces.png skipped: {test.path} has no 'preview_images'", None)]
    point_colors = vis.distinct_colors(test.k)
    count = len(test.preview_images)
    figures.append((f"test_faces.png: first {count} test faces; green discs = annotated, red crosses = regressed "
                    "(forward), a line joins each pair", lambda out_dir: vis.save_png(
                        out_dir / "test_faces.png", faces_picture(test, fwd.pred_xy_px, data_title(report)))))

    def raw_points(out_dir: Path) -> None:
        faces = [preview_face(image, test.detected_xy_px[i], point_colors) for i, image in
                 enumerate(test.preview_images)]
        vis.save_png(out_dir / "test_points.png", vis.image_grid(faces, ncols=8))

    figures.append((f"test_points.png: the same faces with the raw {test.k} detected points, one colour per "
                    "landmark: each colour should sit on the same face part on every face", raw_points))
    return figures


def faces_picture(test: Detections, regressed_xy_px: np.ndarray, title: str) -> np.ndarray:
    """test_faces.png: the preview faces with annotated (green discs) and regressed (red crosses) points, a line
    from each annotated point to its regressed one, and a legend above. regressed_xy_px: (M, 5, 2) crop pixels."""
    from utils import visualize as vis

    faces = [preview_face(image, test.annotated_xy_px[i], [ANNOTATED_RGB] * len(LANDMARK_NAMES),
                          regressed_xy_px[i], REGRESSED_RGB) for i, image in enumerate(test.preview_images)]
    legend = [("circle", ANNOTATED_RGB, "annotated"), ("cross", REGRESSED_RGB, "regressed from the detected points"),
              ("line", REGRESSED_RGB, "error")]
    names = ", ".join(map(landmark_label, LANDMARK_NAMES))
    return vis.add_legend(vis.image_grid(faces, ncols=8), legend,
                          title=f"first {len(faces)} {title} test faces, points: {names}")


def fewshot_plot(report: dict, path: Path):
    """nme_vs_n.png: the few-shot curve of each mode of ours and of each --compare row (mean ± std over
    draws), the mean training shape as a line, and the paper's Table II column beside MAFL. The sizes sit
    evenly spaced, as in a table ('all' last, its image count in the tick), so no two ticks collide.
    Returns the matplotlib Figure."""
    from utils import visualize as vis

    sizes = [s for s in report["settings"]["sizes"] if any(e["size"] == s for e in report["fewshot"])]
    if report["paper_table"] == "mafl":
        sizes = list(dict.fromkeys([*sizes, *paper_results.TABLE_II_SIZES]))
    sizes = sorted((s for s in sizes if s != "all"), key=int) + (["all"] if "all" in sizes else [])
    where = {size: i for i, size in enumerate(sizes)}
    n_train = report["files"]["train"]["images"]
    curves = []
    for label, _, entries, _ in fewshot_series(report):
        style = "o-" if label == report["label"] else "o--"
        for mode in report["main"]:
            curves.append(vis.Curve(f"{label}, {mode}", [where[e["size"]] for e in entries],
                                    [e[mode]["mean_percent"] for e in entries],
                                    [e[mode]["std_percent"] or 0.0 for e in entries], style=style))
    mean_shape = next(row for row in report["baselines"] if row["source"] == MEAN_SHAPE_SOURCE)
    curves.append(vis.Curve(f"{mean_shape['label']} (fwd, no detector)", [0, len(sizes) - 1],
                            [mean_shape["main"]["fwd"]["nme_percent"]] * 2, style="k:"))
    if report["paper_table"] == "mafl":
        column, paper_sizes = paper_results.TABLE_II_OURS, paper_results.TABLE_II_SIZES
        curves.append(vis.Curve(f"paper {column} (all = {paper_results.TABLE_II_ALL_IMAGES} images)",
                                [where[s] for s in paper_sizes],
                                [paper_results.table_ii(column, s) for s in paper_sizes], style="s--"))
    labels = [f"all\n({n_train})" if s == "all" else str(s) for s in sizes]
    return vis.save_line_plot(path, curves, xlabel="N training images for the regressor", ylabel="test NME (% IOD)",
                              title=f"{data_title(report)} few-shot: test NME vs N", xticks=range(len(sizes)),
                              xticklabels=labels)


def per_landmark_plot(report: dict, path: Path):
    """per_landmark.png: forward test error per annotated landmark of ours and of every baseline row (the
    --compare rows, the mean training shape). Returns the matplotlib Figure."""
    from utils import visualize as vis

    ours = report["main"]["fwd"]["per_landmark_percent"]
    series = [(report["label"], list(ours.values()))] + [
        (row["label"], list(row["main"]["fwd"]["per_landmark_percent"].values())) for row in report["baselines"]
        if row["main"].get("fwd", {}).get("per_landmark_percent")]
    return vis.save_bar_chart(path, list(ours), series, ylabel="test NME (% IOD)",
                              title=f"{data_title(report)} test: forward error per annotated landmark")


def preview_face(image_rgb: np.ndarray, disc_xy_px: np.ndarray, disc_colors: list,
                 cross_xy_px: np.ndarray | None = None, cross_color: tuple | None = None) -> np.ndarray:
    """One preview crop, upscaled to at least PREVIEW_MIN_SIDE, with discs (e.g. annotated points, one colour
    each) and, if given, crosses in one colour (e.g. regressed points), each joined to its disc by a line.

    image_rgb: (S, S, 3) uint8 crop; disc_xy_px: (len(disc_colors), 2), cross_xy_px: (same, 2), 128-px crop pixels.
    """
    from utils import visualize as vis

    h, w = image_rgb.shape[:2]
    scale = max(1.0, PREVIEW_MIN_SIDE / min(h, w))
    size_wh = (round(w * scale), round(h * scale))
    face = vis.resize_image(image_rgb, size_wh)
    crop_wh = (EVAL_CROP_SIZE, EVAL_CROP_SIZE)
    discs = vis.rescale_points_px(disc_xy_px, crop_wh, size_wh)
    if cross_xy_px is None:
        return vis.draw_points(face, discs, disc_colors, radius=2, marker="circle")
    crosses = vis.rescale_points_px(cross_xy_px, crop_wh, size_wh)
    face = vis.draw_segments(face, discs, crosses, cross_color)
    face = vis.draw_points(face, discs, disc_colors, radius=2, marker="circle")
    return vis.draw_points(face, crosses, [cross_color] * len(crosses), radius=4, marker="cross")


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
