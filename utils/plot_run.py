"""curves.png: a training run's loss terms, validation NME, spread and part lock, and learning rates over
steps, drawn from its log.jsonl (the records `utils.training.run_log` writes).

    python -m utils.plot_run runs/quickstart-20261206-010000      # writes RUN/curves.png

Training writes the same picture at each validation and when it ends; this command redraws it for any run,
also one still training or stopped. Records of other kinds in log.jsonl (events, the DDP check) and a line
torn by a kill are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from utils.errors import UserError
from utils.files import os_reason
from utils.visualize import save_figure

CURVES_FILE = "curves.png"
NOT_LOSS_TERMS = ("step", "epoch", "lr_fan", "lr_gen", "images_per_s")  # the other keys of a training record


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a log.jsonl, in file order: a training record has the loss
    term 'total', a validation record 'val_nme'; anything else (events, torn lines) is left out."""
    training, validation = [], []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            if "total" in record:
                training.append(record)
            elif "val_nme" in record:
                validation.append(record)
    return training, validation


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the records that have it."""
    kept = [r for r in records if isinstance(r.get(key), (int, float))]
    return [r["step"] for r in kept], [float(r[key]) for r in kept]


def loss_terms(training: list[dict]) -> list[str]:
    """The loss terms logged ('total' first), in the order the records first name them."""
    names = dict.fromkeys(k for r in training for k, v in r.items() if k not in NOT_LOSS_TERMS
                          and isinstance(v, (int, float)))
    return ["total", *(name for name in names if name != "total")]


def curves_figure(training: list[dict], validation: list[dict], title: str):
    """The 2 x 2 matplotlib Figure: loss terms (log scale when all positive), validation NME and its best,
    spread and part lock (with the line 1: a point that stays put in the crop), learning rates."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    (loss_ax, nme_ax), (collapse_ax, lr_ax) = fig.subplots(2, 2, sharex=True)
    values = []
    for name in loss_terms(training):
        steps, term = series(training, name)
        loss_ax.plot(steps, term, label=name, linewidth=2.0 if name == "total" else 1.0)
        values += term
    if values and min(values) > 0:
        loss_ax.set_yscale("log")
    loss_ax.set(title="training loss terms (mean over each log window)", ylabel="loss")
    nme_ax.plot(*series(validation, "val_nme"), "o-", label="validation NME")
    nme_ax.plot(*series(validation, "best_val_nme"), "--", label="best so far")
    nme_ax.set(title="validation: forward NME of a ridge regressor", ylabel="NME (% IOD)")
    collapse_ax.plot(*series(validation, "val_spread"), "o-", label="spread (0: one blob)")
    collapse_ax.plot(*series(validation, "val_part_lock"), "s-", label="part lock (0: rides on a face part)")
    collapse_ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    collapse_ax.set(title="validation: do the points spread and follow face parts?", xlabel="step")
    lr_ax.plot(*series(training, "lr_fan"), label="detector")
    lr_ax.plot(*series(training, "lr_gen"), "--", label="generator")
    lr_ax.set(title="learning rates", xlabel="step", yscale="log" if training else "linear")
    for ax in (loss_ax, nme_ax, collapse_ax, lr_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return fig


def write_curves(run_dir: str | Path) -> Path:
    """Draw RUN/curves.png from RUN/log.jsonl; returns its path. A missing folder or log is a UserError."""
    run_dir = Path(run_dir)
    log = run_dir / "log.jsonl"
    if not log.is_file():
        raise UserError(f"{run_dir}: no log.jsonl there; expected a run folder that train.py wrote")
    training, validation = read_log(log)
    last = max([r["step"] for r in training + validation], default=0)
    fig = curves_figure(training, validation, f"{run_dir.name}: {last} steps logged")
    save_figure(run_dir / CURVES_FILE, fig)
    return run_dir / CURVES_FILE


def write_curves_quietly(run_dir: Path) -> None:
    """`write_curves` during training: a picture that cannot be drawn (a full disk) is a warning, never a stop."""
    try:
        write_curves(run_dir)
    except (OSError, ValueError, UserError) as exc:
        print(f"warning: {run_dir / CURVES_FILE} not drawn: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (holding log.jsonl); curves.png is written into it")
    args = parser.parse_args(argv)
    try:
        path = write_curves(args.run)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or args.run}: cannot write ({os_reason(exc)})", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
