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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import paper_results
from utils.detections import (
    LANDMARK_NAMES,
    Comparison,
    Detections,
    check_pair,
    dir_inputs,
    load_comparisons,
    load_detections,
)
from utils.errors import UserError
from utils.metrics import (
    CROP_SIZE,
    SOLVERS,
    backward_error,
    collapse_stats,
    collapse_warning,
    fewshot_indices,
    interocular_distance,
    normalised_point_errors,
    regress_points,
)

DATASETS = ("mafl", "aflw", "mtfl")
DEFAULT_SIZES = "1,5,10,100,500,1000,5000,all"
REFERENCE_BACKWARD_DIVISOR = 10  # the reference's hard-coded K in the backward error
PREVIEW_MIN_SIDE = 128  # preview faces are upscaled to at least this side for drawing


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """Resolved settings of one evaluation run (built from the command line by `config_from_args`)."""

    train_path: Path
    test_path: Path
    out_dir: Path
    reg: float = 1e-4
    bias: bool = True
    modes: tuple[str, ...] = ("fwd",)
    solver: str = "closed-form"
    fewshot: bool = True
    sizes: tuple[int | str, ...] = (1, 5, 10, 100, 500, 1000, 5000, "all")
    sizes_given: bool = False  # False: the default sizes, those larger than the train split dropped
    repeats: int = 10
    seed: int = 0
    reference_fewshot: bool = False
    reference_backward: bool = False
    paper_table: str = "auto"
    label: str | None = None
    compare: tuple[tuple[str, Path], ...] = ()  # (label, detections folder) per --compare


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
# Protocol
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    """Test errors of one regressor fit. errors: (M,) fractions of the IOD; point_errors: (M, 5)
    per annotated landmark (forward only, else None); pred_xy_px: (M, Q, 2) predicted points."""

    errors: np.ndarray
    point_errors: np.ndarray | None
    pred_xy_px: np.ndarray


@dataclass(frozen=True)
class FewShotRow:
    """One few-shot size: `n_images` training images per draw, errors (R,) = test mean error per draw."""

    size: int | str
    n_images: int
    errors: np.ndarray


def fit_and_score(
    train: Detections, test: Detections, mode: str, indices: np.ndarray, cfg: EvalConfig
) -> FitResult:
    """Fit on train[indices] and score on the whole test split; mode 'fwd' or 'bwd'."""
    if mode == "fwd":
        pred = regress_points(
            train.detected_xy_px[indices], train.annotated_xy_px[indices], test.detected_xy_px,
            cfg.reg, cfg.bias, cfg.solver,
        )  # (M, 5, 2)
        iod = interocular_distance(test.annotated_xy_px)  # (M,)
        point_errors = normalised_point_errors(pred, test.annotated_xy_px, iod)  # (M, 5)
        return FitResult(point_errors.mean(axis=1), point_errors, pred)
    pred = regress_points(
        train.annotated_xy_px[indices], train.detected_xy_px[indices], test.annotated_xy_px,
        cfg.reg, cfg.bias, cfg.solver,
    )  # (M, K, 2)
    divisor = REFERENCE_BACKWARD_DIVISOR if cfg.reference_backward else None
    errors = backward_error(pred, test.detected_xy_px, test.annotated_xy_px, reference_divisor=divisor)
    return FitResult(errors, None, pred)


def run_fewshot(train: Detections, test: Detections, mode: str, cfg: EvalConfig) -> list[FewShotRow]:
    """The few-shot table for one mode: for each size, the mean test error of every seeded draw."""
    rows = []
    for size in cfg.sizes:
        draws = fewshot_indices(train.n, size, cfg.repeats, cfg.seed, cfg.reference_fewshot)
        errors = np.array([fit_and_score(train, test, mode, idx, cfg).errors.mean() for idx in draws])
        rows.append(FewShotRow(size, len(draws[0]), errors))
    return rows


def check_sizes(sizes: tuple[int | str, ...], train: Detections) -> None:
    too_big = [s for s in sizes if s != "all" and s > train.n]
    if too_big:
        raise UserError(
            f"{train.path}: few-shot sizes {too_big} exceed its {train.n} training images; "
            "drop them from --sizes or use 'all'"
        )


def default_label(checkpoint: str, k: int) -> str:
    """'runs/celeba_k10/best.pt@sha256:ab12' -> 'ours celeba_k10/best.pt@sha256:ab12, K=10'."""
    short = "/".join(Path(checkpoint).parts[-2:]) if checkpoint else "unknown checkpoint"
    return f"ours {short}, K={k}"


def mean_shape_fit(train_annotated_xy_px: np.ndarray, test_annotated_xy_px: np.ndarray) -> FitResult:
    """The no-detector baseline: predict every test face as the mean annotated training shape.

    Args:
        train_annotated_xy_px: (N, 5, 2); test_annotated_xy_px: (M, 5, 2), (x, y) crop pixels.
    Returns:
        FitResult with errors (M,), point_errors (M, 5) as fractions of each test face's IOD, and
        pred_xy_px (M, 5, 2) = the mean shape, repeated.

    Example (by hand): training shapes F and F + (2, 0) average to F + (1, 0); a test face F with eyes
    40 px apart is off by 1 px at every point, so its NME is 1 / 40 = 2.5 %.
    """
    mean_shape = np.asarray(train_annotated_xy_px, dtype=np.float64).mean(axis=0)  # (5, 2)
    pred = np.broadcast_to(mean_shape, test_annotated_xy_px.shape)  # (M, 5, 2)
    point_errors = normalised_point_errors(pred, test_annotated_xy_px, interocular_distance(test_annotated_xy_px))
    return FitResult(point_errors.mean(axis=1), point_errors, pred)


def fit_stats(fits: dict[str, FitResult]) -> dict:
    """mode -> {"nme_percent", "per_landmark_percent" (forward only, else None)} of a row of the main table."""
    return {
        mode: {
            "nme_percent": 100 * float(fit.errors.mean()),
            "per_landmark_percent": None if fit.point_errors is None
            else dict(zip(LANDMARK_NAMES, (100 * fit.point_errors.mean(axis=0)).tolist())),
        }
        for mode, fit in fits.items()
    }


def files_info(train: Detections, test: Detections) -> dict:
    """Where a row's detections came from, for results.json."""
    return {
        part: {"path": d.path, "split": d.split, "images": d.n, "checkpoint": d.checkpoint, "settings": d.settings}
        for part, d in (("train", train), ("test", test))
    }


def baseline_rows(
    train: Detections, test: Detections, comparisons: Sequence[Comparison], cfg: EvalConfig
) -> list[dict]:
    """The main table's other rows: each --compare folder with our regressor, then the mean training shape."""
    rows = []
    for c in comparisons:
        everything = np.arange(c.train.n)
        fits = {mode: fit_and_score(c.train, c.test, mode, everything, cfg) for mode in cfg.modes}
        rows.append({"label": c.label, "k": c.train.k, "images": c.train.n, "source": f"this run, {c.folder}",
                     "files": files_info(c.train, c.test), "main": fit_stats(fits),
                     "collapse": collapse_stats(c.test.detected_xy_px, c.test.annotated_xy_px)})
    mean_shape = mean_shape_fit(train.annotated_xy_px, test.annotated_xy_px)
    rows.append({"label": "mean training shape", "k": None, "images": train.n,
                 "source": "this run, no detector", "main": fit_stats({"fwd": mean_shape})})
    return rows


def evaluate(
    train: Detections, test: Detections, dataset: str, cfg: EvalConfig, comparisons: Sequence[Comparison] = ()
) -> tuple[dict, dict]:
    """Run the protocol. Returns (report: JSON-ready dict, main fits: mode -> FitResult)."""
    everything = np.arange(train.n)
    fits = {mode: fit_and_score(train, test, mode, everything, cfg) for mode in cfg.modes}
    other = SOLVERS[1 - SOLVERS.index(cfg.solver)]
    first = cfg.modes[0]
    check = fit_and_score(train, test, first, everything, dataclasses.replace(cfg, solver=other))
    paper = dataset if cfg.paper_table == "auto" else cfg.paper_table
    paper = paper if paper in paper_results.TABLE_I_DATASETS else "none"
    report = {
        "label": cfg.label or default_label(train.checkpoint, train.k),
        "dataset": dataset,
        "k": train.k,
        "files": files_info(train, test),
        "settings": {key: value for key, value in dataclasses.asdict(cfg).items()
                     if key not in ("train_path", "test_path", "out_dir", "compare")},
        "main": fit_stats(fits),
        "collapse": collapse_stats(test.detected_xy_px, test.annotated_xy_px),
        "collapse_annotated": collapse_stats(test.annotated_xy_px, test.annotated_xy_px),  # what real parts score
        "baselines": baseline_rows(train, test, comparisons, cfg),
        "solver_check": {
            "mode": first,
            "solvers": [cfg.solver, other],
            "max_abs_point_diff_px": float(np.abs(check.pred_xy_px - fits[first].pred_xy_px).max()),
            "nme_diff_percent": 100 * abs(float(check.errors.mean() - fits[first].errors.mean())),
        },
        "paper_table": paper,
        "paper_source": paper_results.SOURCE,
        "fewshot": [],
    }
    if cfg.fewshot:
        tables = {mode: run_fewshot(train, test, mode, cfg) for mode in cfg.modes}
        for i, size in enumerate(cfg.sizes):
            entry = {"size": size, "images_per_draw": tables[first][i].n_images,
                     "draws": len(tables[first][i].errors)}
            for mode, rows in tables.items():
                values = 100 * rows[i].errors
                entry[mode] = {
                    "mean_percent": float(values.mean()),
                    "std_percent": float(values.std(ddof=1)) if len(values) > 1 else None,
                    "draws_percent": values.tolist(),
                }
            if paper == "mafl":
                entry["paper"] = {col: paper_results.table_ii(col, size) for col in paper_results.TABLE_II}
            report["fewshot"].append(entry)
    return report, fits


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
