"""Evaluate detected landmarks with the linear-regressor protocol (docs/reference.md) and compare to the paper.

    python eval_regressor.py --dir runs/celeba_k10/detections --dataset mafl
    python eval_regressor.py --train mafl-train.npz --test mafl-test.npz --mode both --repeats 10
    python eval_regressor.py --dir runs/x/detections-last --dataset mafl \\
        --compare "untrained detector=runs/x/detections-init"

Reads the per-split `.npz` files written by extract_data.py (`save_detections` in
utils/evaluation/detections.py defines the format), fits a ridge regressor from detected to annotated points (forward; "bwd" is the reverse) on
the training split and reports the test NME in percent of the inter-ocular distance, beside the
paper's Table I, then the few-shot table (N training images, mean ± std over seeded draws) beside
Table II. Writes results.md/.json/.csv, then PNG figures, to --out. A test file that shares images with
the training file is refused.

Baselines in the same main table: "mean training shape" (every test face predicted as the mean of
the annotated training points, no detector and no regressor: what a detector must beat) is always
there; each `--compare LABEL=DIR` adds the same regressor fitted on another folder of detections
(e.g. an untrained detector's).

The forward regressor of the main row (fitted on every training face) can be kept: `--save-regressor FILE.json`
writes it (weights, K, the five names, the detections' checkpoint SHA-256, crop margin and size), and
`--attach-to CHECKPOINT` stores it in that checkpoint as its `named_points`, so that detect.py writes the five
named points too. The checkpoint must be the very file the detections were made with (same SHA-256) and have
the same K; the file is then replaced atomically (its SHA-256 changes), under the run folder's lock. A kept
regressor needs at least 5 training faces per input (100 for K = 10) unless --force.

The training and test files must come from the same data root (each records its own) unless
--allow-different-roots is given. Ctrl-C stops it with one line; files written before stay whole.

Deliberate differences from the reference, each behind a named switch: the few-shot draws use exactly
N images over --repeats seeded draws (`--reference-fewshot`: one draw of N + 1), and the backward error
divides by K instead of a hard-coded 10 (`--reference-backward`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from utils.dataset_registry import BENCHMARKS
from utils.errors import UserError
from utils.checkpoint import OUTPUT_RULE, check_output, file_sha256
from utils.evaluation.detections import Detections, check_pair, dir_inputs, load_comparisons, load_detections
from utils.evaluation.protocol import EvalConfig, check_sizes, evaluate
from utils.evaluation.regressor_file import (AttachTarget, attach_regressor, check_attachable, check_enough_faces,
                                             regressor_record, save_regressor)
from utils.evaluation.report import write_outputs
from utils.files import check_writable_folder, os_reason
from utils.metrics import SOLVERS, collapse_warning
DEFAULT_SIZES = "1,5,10,100,500,1000,5000,all"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, epilog=OUTPUT_RULE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs (either --train/--test or --dir/--dataset)")
    src.add_argument("--train", type=Path, help="detections .npz of the training split (regressor fit)")
    src.add_argument("--test", type=Path, help="detections .npz of the test split (NME is reported on it)")
    src.add_argument(
        "--dir", type=Path,
        help="folder holding <dataset>-train.npz and <dataset>-test.npz (mtfl: -val.npz if -test is absent)",
    )
    src.add_argument("--dataset", choices=tuple(BENCHMARKS), help="which dataset's files to take from --dir")
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
        help="reproduce the reference: one draw of N + 1 images (docs/reference.md, bug 9); only for comparison",
    )
    p.add_argument(
        "--reference-backward", action="store_true",
        help="reproduce the reference's backward error, divided by 10 whatever K is (docs/reference.md, bug 8)",
    )
    p.add_argument(
        "--out", type=Path,
        help="output folder for results.md/.json/.csv and PNGs (default: <test npz folder>/eval)",
    )
    p.add_argument(
        "--paper-table", choices=("auto", "mafl", "aflw", "none"), default="auto",
        help="which paper column to print beside ours (default auto: follows the dataset; none for mtfl and "
             "synthetic data, where a named table gets a note instead of the paper's rows)",
    )
    p.add_argument("--label", help="name of our row (default: checkpoint and K from the files)")
    p.add_argument("--save-regressor", type=Path, metavar="FILE.json",
                   help="also write the forward regressor of the main row (fitted on all training faces, whatever "
                   "--mode) as JSON: weights, K, the five names, the detections' checkpoint sha256, tight, image_size")
    p.add_argument("--attach-to", type=Path, metavar="CHECKPOINT",
                   help="also store that regressor in CHECKPOINT as its named_points (fitted_on '<split> landmark-"
                   "driven crops'), replacing the file atomically; refused unless CHECKPOINT is the file the "
                   "detections were made with (same sha256) and has their K. detect.py then writes the named points")
    p.add_argument(
        "--compare", action="append", default=[], metavar="LABEL=DIR",
        help="add a row LABEL to the main table: the same regressor fitted on DIR/<dataset>-train.npz and "
        "tested on DIR's matching test file (found as with --dir), e.g. the detections of an untrained "
        "detector; repeatable. Use it to show what training adds; K may differ from ours",
    )
    add_safety_options(p)
    return p


def add_safety_options(p: argparse.ArgumentParser) -> None:
    """--overwrite, --allow-different-roots and --force: each lets through something refused by default."""
    p.add_argument("--overwrite", action="store_true", help="replace the results.* of --out and the "
                   "--save-regressor file if they exist (refused without it)")
    p.add_argument("--allow-different-roots", action="store_true", help="accept --train and --test files "
                   "extracted from different data roots (a test set kept in another folder); refused without it")
    p.add_argument("--force", action="store_true", help="keep (--save-regressor, --attach-to) a regressor fitted on "
                   "fewer than 5 training faces per input")


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
    """Check the parsed options and resolve them into an EvalConfig; a bad value is a UserError."""
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


def main(argv: list[str] | None = None) -> int:
    """Load and check both files, run the protocol, write the report; 0 on success, 2 on a UserError, 130 after
    Ctrl-C."""
    args, target = build_parser().parse_args(argv), None
    try:
        cfg = config_from_args(args)
        check_outputs(args, cfg)
        check_writable_folder(cfg.out_dir, "the report (--out)")  # before the work, leaving nothing behind
        train, test = load_detections(cfg.train_path), load_detections(cfg.test_path)
        dataset = check_pair(train, test)
        check_same_root(train, test, args.allow_different_roots)
        if cfg.fewshot and cfg.sizes_given:
            check_sizes(cfg.sizes, train)
        elif cfg.fewshot:
            cfg = dataclasses.replace(cfg, sizes=tuple(s for s in cfg.sizes if s == "all" or s <= train.n))
        comparisons = load_comparisons(cfg.compare, dataset, test)
        target = check_regressor_outputs(args, train)
        start = time.perf_counter()
        report, fits = evaluate(train, test, dataset, cfg, comparisons)
        markdown = write_outputs(report, fits, test, cfg.out_dir)
        kept = keep_regressor(args, train, cfg, target)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every write is atomic: each file is the old one or the new one, whole
        print("\ninterrupted (Ctrl-C); the files written before it are whole", file=sys.stderr)
        return 130
    finally:
        if target is not None:
            target.release()
    print(markdown, end="")
    if warning := collapse_warning(report["collapse"]):
        print(f"warning: {cfg.test_path}: {warning}", file=sys.stderr)
    print(f"wrote {cfg.out_dir}/results.md, .json, .csv and figures in {time.perf_counter() - start:.1f} s")
    for line in kept:
        print(line)
    return 0


def check_outputs(args: argparse.Namespace, cfg: EvalConfig) -> None:
    """The output rule (utils.checkpoint.OUTPUT_RULE) for --out's results.* and --save-regressor."""
    inputs = [("--train", cfg.train_path), ("--test", cfg.test_path)]
    for name in ("results.md", "results.json", "results.csv"):
        check_output(cfg.out_dir / name, "--out", inputs, args.overwrite)
    if args.save_regressor is not None:
        check_output(args.save_regressor, "--save-regressor", inputs, args.overwrite)


def check_same_root(train: Detections, test: Detections, allowed: bool) -> None:
    """Refuse, in one line naming both, training and test detections extracted from different data roots."""
    roots = [d.settings.get("data_root") for d in (train, test)]
    if None in roots or allowed or Path(roots[0]).resolve() == Path(roots[1]).resolve():
        return
    raise UserError(f"{train.path} was extracted from data root {roots[0]} but {test.path} from {roots[1]}; "
                    "extract both from the same copy, or give --allow-different-roots if the test set is kept apart")


def check_regressor_outputs(args: argparse.Namespace, train: Detections) -> AttachTarget | None:
    """Before the work: --save-regressor's folder takes files, the regressor has enough faces, --attach-to is
    the detections' checkpoint (read once and locked: the returned target)."""
    flags = [flag for flag, value in (("--save-regressor", args.save_regressor), ("--attach-to", args.attach_to))
             if value is not None]
    if flags:
        check_enough_faces(train, " and ".join(flags), args.force)
    if args.save_regressor is not None:
        check_writable_folder(args.save_regressor.parent, "the regressor (--save-regressor)")
    return check_attachable(args.attach_to, train) if args.attach_to is not None else None


def keep_regressor(args: argparse.Namespace, train: Detections, cfg: EvalConfig, target: AttachTarget | None
                   ) -> list[str]:
    """Write and attach the forward regressor as asked; returns the lines to print."""
    if args.save_regressor is None and target is None:
        return []
    record = regressor_record(train, cfg.reg, cfg.bias, cfg.solver)
    lines = []
    try:
        if args.save_regressor is not None:
            save_regressor(args.save_regressor, record)
            lines.append(f"wrote the forward regressor (K={record['k']}, {record['images']} faces) to "
                         f"{args.save_regressor}")
        if target is not None:
            attach_regressor(target, record)
            lines.append(f"attached it to {target.path} as named_points (the file changed: sha256:"
                         f"{file_sha256(target.path)[:12]})")
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write ({os_reason(exc)}); the report is written") from None
    return lines


if __name__ == "__main__":
    sys.exit(main())
