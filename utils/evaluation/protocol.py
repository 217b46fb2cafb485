"""The linear-regressor evaluation protocol (docs/reference.md, "Evaluation"): fit a ridge regressor from detected to
annotated points ("fwd"; "bwd" is the reverse) on a training split, score it on a test split, the
few-shot table over seeded draws, and the baseline rows of the main table. The metrics themselves are
in utils/metrics.py; eval_regressor.py is the command line around `evaluate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.synthetic import is_synthetic_root
from utils.errors import UserError
from utils.evaluation import paper_results
from utils.evaluation.detections import Comparison, Detections
from utils.landmarks import LANDMARK_NAMES, landmark_label
from utils.metrics import (
    SOLVERS,
    backward_error,
    collapse_stats,
    fewshot_indices,
    interocular_distance,
    normalised_point_errors,
    regress_points,
)

REFERENCE_BACKWARD_DIVISOR = 10  # the reference's hard-coded K in the backward error
MEAN_SHAPE_SOURCE = "this run, no detector"  # the `source` of the mean-training-shape row


@dataclass(frozen=True)
class EvalConfig:
    """Resolved settings of one evaluation run (built from the command line by
    `eval_regressor.config_from_args`)."""

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
    """Refuse few-shot sizes larger than the training split (given with --sizes); 'all' always fits."""
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
            else dict(zip(map(landmark_label, LANDMARK_NAMES), (100 * fit.point_errors.mean(axis=0)).tolist())),
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
                     "collapse": collapse_stats(c.test.detected_xy_px, c.test.annotated_xy_px),
                     "fewshot": fewshot_entries(c.train, c.test, cfg, "none") if cfg.fewshot else []})
    mean_shape = mean_shape_fit(train.annotated_xy_px, test.annotated_xy_px)
    rows.append({"label": "mean training shape", "k": None, "images": train.n,
                 "source": MEAN_SHAPE_SOURCE, "main": fit_stats({"fwd": mean_shape})})
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
    data = data_source(train, dataset)
    asked = dataset if cfg.paper_table == "auto" else cfg.paper_table
    report = {
        "label": cfg.label or default_label(train.checkpoint, train.k),
        "dataset": dataset,
        "data": data,
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
        "paper_table": asked if asked == data and asked in paper_results.TABLE_I_DATASETS else "none",
        "paper_asked": asked,
        "paper_source": paper_results.SOURCE,
    }
    report["fewshot"] = fewshot_entries(train, test, cfg, report["paper_table"]) if cfg.fewshot else []
    return report, fits


def data_source(det: Detections, dataset: str) -> str:
    """What the detections were made on: 'synthetic' for faces written by datasets.synthetic (extract_data.py
    records it in the settings; for older files, the set's marker at their data_root tells), else `dataset`."""
    synthetic = det.settings.get("synthetic")
    if synthetic is None:
        synthetic = "data_root" in det.settings and is_synthetic_root(det.settings["data_root"])
    return "synthetic" if synthetic else dataset


def fewshot_entries(train: Detections, test: Detections, cfg: EvalConfig, paper: str) -> list[dict]:
    """The few-shot table as report entries, one per size of cfg.sizes that fits the training split: draws,
    mean and std per mode, and the paper's Table II beside it when `paper` is 'mafl'."""
    sizes = [s for s in cfg.sizes if s == "all" or s <= train.n]
    tables = {mode: run_fewshot(train, test, mode, dataclasses.replace(cfg, sizes=tuple(sizes))) for mode in cfg.modes}
    entries = []
    for i, size in enumerate(sizes):
        first = tables[cfg.modes[0]][i]
        entry = {"size": size, "images_per_draw": first.n_images, "draws": len(first.errors)}
        for mode, rows in tables.items():
            values = 100 * rows[i].errors
            entry[mode] = {
                "mean_percent": float(values.mean()),
                "std_percent": float(values.std(ddof=1)) if len(values) > 1 else None,
                "draws_percent": values.tolist(),
            }
        if paper == "mafl":
            entry["paper"] = {col: paper_results.table_ii(col, size) for col in paper_results.TABLE_II}
        entries.append(entry)
    return entries
