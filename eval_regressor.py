"""Evaluate detected landmarks with the linear-regressor protocol (spec section 5) and compare to the paper.

    python eval_regressor.py --dir runs/celeba_k10/detections --dataset mafl
    python eval_regressor.py --train mafl-train.npz --test mafl-test.npz --mode both --repeats 10
    python eval_regressor.py --dir runs/x/detections-last --dataset mafl \\
        --compare "untrained detector=runs/x/detections-init"

Reads the per-split `.npz` files written by extract_data.py (`save_detections` in utils/detections.py
defines the format), fits a ridge regressor from detected to annotated points (forward; "bwd" is the reverse) on
the training split and reports the test NME in percent of the inter-ocular distance, beside the
paper's Table I, then the few-shot table (N training images, mean ± std over seeded draws) beside
Table II. Writes results.md/.json/.csv and PNG figures to --out.

Baselines in the same main table: "mean training shape" (every test face predicted as the mean of
the annotated training points, no detector and no regressor: what a detector must beat) is always
there; each `--compare LABEL=DIR` adds the same regressor fitted on another folder of detections
(e.g. an untrained detector's).

Deliberate differences from the reference, each behind a named switch: the few-shot draws use exactly
N images over --repeats seeded draws (`--reference-fewshot`: one draw of N + 1), and the backward error
divides by K instead of a hard-coded 10 (`--reference-backward`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from utils import paper_results
from utils.detections import LANDMARK_NAMES, Detections, check_pair, dir_inputs, load_comparisons, load_detections
from utils.errors import UserError
from utils.metrics import CROP_SIZE, SOLVERS, collapse_warning
from utils.protocol import EvalConfig, check_sizes, evaluate

DATASETS = ("mafl", "aflw", "mtfl")
DEFAULT_SIZES = "1,5,10,100,500,1000,5000,all"
PREVIEW_MIN_SIDE = 128  # preview faces are upscaled to at least this side for drawing


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs (either --train/--test or --dir/--dataset)")
    src.add_argument("--train", type=Path, help="detections .npz of the training split (regressor fit)")
    src.add_argument("--test", type=Path, help="detections .npz of the test split (NME is reported on it)")
    src.add_argument(
        "--dir", type=Path,
        help="folder holding <dataset>-train.npz and <dataset>-test.npz (mtfl: -val.npz if -test is absent)",
    )
    src.add_argument("--dataset", choices=DATASETS, help="which dataset's files to take from --dir")
    p.add_argument(
        "--reg", type=float, default=1e-4,
        help="ridge lambda, relative to the largest entry of XᵀX (default %(default)g, the "
        "reference README's value); raise it if few-shot NME explodes at small N; 0 is plain least squares",
    )
    p.add_argument(
        "--bias", action=argparse.BooleanOptionalAction, default=True,
        help="fit an intercept by centring both sides (default, the reference); --no-bias is IMM's variant",
    )
    p.add_argument(
        "--mode", choices=("fwd", "bwd", "both"), default="fwd",
        help="fwd: detected -> annotated (the paper's metric); bwd: annotated -> detected, which "
        "penalises detected points that annotations cannot explain (default %(default)s)",
    )
    p.add_argument(
        "--solver", choices=SOLVERS, default="closed-form",
        help="closed-form ridge (the reference) or scikit-learn Ridge with the matched alpha; both "
        "agree to rounding, and the other one is always run once as a cross-check (default %(default)s)",
    )
    p.add_argument(
        "--fewshot", action=argparse.BooleanOptionalAction, default=True,
        help="also run the few-shot table (Table II; default on); --no-fewshot for only the all-images row",
    )
    p.add_argument(
        "--sizes", default=None,
        help=f"few-shot numbers of training images N, or 'all' (default {DEFAULT_SIZES}, Table II, "
             "leaving out the sizes larger than the training split; sizes given here must fit)",
    )
    p.add_argument(
        "--repeats", type=int, default=10,
        help="seeded draws per few-shot N (default %(default)s); more draws narrow the ± of the mean",
    )
    p.add_argument(
        "--seed", type=int, default=0,
        help="seed of the few-shot draws (default %(default)s); change it to check the spread",
    )
    p.add_argument(
        "--reference-fewshot", action="store_true",
        help="reproduce the reference: one draw of N + 1 images (spec 7, bug 9); only for comparison",
    )
    p.add_argument(
        "--reference-backward", action="store_true",
        help="reproduce the reference's backward error, divided by 10 whatever K is (spec 7, bug 8)",
    )
    p.add_argument(
        "--out", type=Path,
        help="output folder for results.md/.json/.csv and PNGs (default: <test npz folder>/eval)",
    )
    p.add_argument(
        "--paper-table", choices=("auto", "mafl", "aflw", "none"), default="auto",
        help="which paper column to print beside ours (default auto: follows the dataset, none for mtfl)",
    )
    p.add_argument("--label", help="name of our row (default: checkpoint and K from the files)")
    p.add_argument(
        "--compare", action="append", default=[], metavar="LABEL=DIR",
        help="add a row LABEL to the main table: the same regressor fitted on DIR/<dataset>-train.npz and "
        "tested on DIR's matching test file (found as with --dir), e.g. the detections of an untrained "
        "detector; repeatable. Use it to show what training adds; K may differ from ours",
    )
    return p


def parse_compare(items: list[str]) -> tuple[tuple[str, Path], ...]:
    """['untrained=runs/x/det-init'] -> (('untrained', Path('runs/x/det-init')),); labels unique."""
    pairs: list[tuple[str, Path]] = []
    for item in items:
        label, sep, folder = item.partition("=")
        label, folder = label.strip(), folder.strip()
        if not sep or not label or not folder:
            raise UserError(
                f"--compare {item!r}: expected LABEL=DIR (e.g. --compare untrained=runs/x/detections-init)"
            )
        if label in [known for known, _ in pairs]:
            raise UserError(f"--compare: label {label!r} is given twice; give each row its own label")
        pairs.append((label, Path(folder)))
    return tuple(pairs)


def parse_sizes(text: str) -> tuple[int | str, ...]:
    """'1,5,all' -> (1, 5, 'all'); each a positive integer or 'all', no repeats."""
    sizes: list[int | str] = []
    for token in (t.strip().lower() for t in text.split(",")):
        if token != "all" and not (token.isdigit() and int(token) > 0):
            raise UserError(f"--sizes: {token!r} is not a positive integer or 'all' (e.g. 1,5,10,all)")
        size = token if token == "all" else int(token)
        if size in sizes:
            raise UserError(f"--sizes: {token!r} is listed twice")
        sizes.append(size)
    return tuple(sizes)


def resolve_inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(train npz, test npz) from --train/--test or from --dir/--dataset."""
    if args.dir is not None or args.dataset is not None:
        if args.train is not None or args.test is not None:
            raise UserError("give either --train/--test or --dir/--dataset, not both")
        if args.dir is None or args.dataset is None:
            raise UserError("--dir and --dataset go together (e.g. --dir runs/x/detections --dataset mafl)")
        return dir_inputs(args.dir, args.dataset)
    if args.train is None or args.test is None:
        raise UserError("give --train and --test (the detections .npz files), or --dir and --dataset")
    return args.train, args.test


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    train_path, test_path = resolve_inputs(args)
    if args.reg < 0:
        raise UserError(f"--reg must be >= 0, got {args.reg}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    return EvalConfig(
        train_path=train_path,
        test_path=test_path,
        out_dir=args.out if args.out is not None else test_path.parent / "eval",
        reg=args.reg,
        bias=args.bias,
        modes=("fwd", "bwd") if args.mode == "both" else (args.mode,),
        solver=args.solver,
        fewshot=args.fewshot,
        sizes=parse_sizes(args.sizes or DEFAULT_SIZES),
        sizes_given=args.sizes is not None,
        repeats=args.repeats,
        seed=args.seed,
        reference_fewshot=args.reference_fewshot,
        reference_backward=args.reference_backward,
        paper_table=args.paper_table,
        label=args.label,
        compare=parse_compare(args.compare),
    )


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def save_figures(report: dict, fits: dict, test: Detections, out_dir: Path) -> list[str]:
    """Write the PNG figures; return notes naming what was written and what was skipped, and why."""
    from utils import visualize as vis

    notes = []
    n_train = report["files"]["train"]["images"]
    if report["fewshot"]:
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
        vis.save_line_plot(out_dir / "nme_vs_n.png", curves, xlabel="N training images for the regressor",
                           ylabel="test NME (% IOD)", title=f"{report['dataset'].upper()} few-shot",
                           log_x=True, xticks=sorted(ticks), xticklabels=[ticks[n] for n in sorted(ticks)])
        notes.append("nme_vs_n.png: test NME vs N (mean ± std over draws)")
    fwd = fits.get("fwd")
    if fwd is None:
        notes.append("per_landmark.png and test_faces.png skipped: they need --mode fwd or both")
        return notes
    per_landmark = report["main"]["fwd"]["per_landmark_percent"]
    vis.save_bar_chart(out_dir / "per_landmark.png", list(per_landmark), list(per_landmark.values()),
                       ylabel="test NME (% IOD)", title="forward error per annotated landmark")
    notes.append("per_landmark.png: forward error per annotated landmark")
    if test.preview_images is None:
        notes.append(f"test_faces.png skipped: {test.path} has no 'preview_images'")
        return notes
    colors = vis.distinct_colors(len(LANDMARK_NAMES))
    faces = [
        preview_face(image, test.annotated_xy_px[i], fwd.pred_xy_px[i], colors)
        for i, image in enumerate(test.preview_images)
    ]
    vis.save_png(out_dir / "test_faces.png", vis.image_grid(faces, ncols=8))
    notes.append(f"test_faces.png: first {len(faces)} test faces; discs = annotated, crosses = regressed "
                 f"(forward); colours follow {', '.join(LANDMARK_NAMES)}")
    point_colors = vis.distinct_colors(test.k)
    faces = [preview_face(image, test.detected_xy_px[i], None, point_colors)
             for i, image in enumerate(test.preview_images)]
    vis.save_png(out_dir / "test_points.png", vis.image_grid(faces, ncols=8))
    notes.append(f"test_points.png: the same faces with the raw {test.k} detected points, one colour per landmark: "
                 "each colour should sit on the same face part on every face")
    return notes


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
    crop_wh = (CROP_SIZE, CROP_SIZE)
    face = vis.draw_points(face, vis.rescale_points_px(disc_xy_px, crop_wh, size_wh), colors, radius=2,
                           marker="circle")
    if cross_xy_px is None:
        return face
    return vis.draw_points(face, vis.rescale_points_px(cross_xy_px, crop_wh, size_wh), colors, radius=3,
                           marker="cross")


def write_outputs(report: dict, fits: dict, test: Detections, out_dir: Path) -> str:
    """Write results.md/.json/.csv and the figures into out_dir; return the Markdown text."""
    notes = save_figures(report, fits, test, out_dir)
    markdown = format_markdown(report, notes)
    _write_text(out_dir / "results.md", markdown)
    _write_text(out_dir / "results.json", json.dumps(report, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    _write_text(out_dir / "results.csv", buffer.getvalue())
    return markdown


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        train, test = load_detections(cfg.train_path), load_detections(cfg.test_path)
        dataset = check_pair(train, test)
        if cfg.fewshot and cfg.sizes_given:
            check_sizes(cfg.sizes, train)
        elif cfg.fewshot:
            cfg = dataclasses.replace(cfg, sizes=tuple(s for s in cfg.sizes if s == "all" or s <= train.n))
        comparisons = load_comparisons(cfg.compare, dataset, test)
        start = time.perf_counter()
        report, fits = evaluate(train, test, dataset, cfg, comparisons)
        markdown = write_outputs(report, fits, test, cfg.out_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown, end="")
    if warning := collapse_warning(report["collapse"]):
        print(f"warning: {cfg.test_path}: {warning}", file=sys.stderr)
    print(f"wrote {cfg.out_dir}/results.md, .json, .csv and figures in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
