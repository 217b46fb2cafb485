"""Helpers of scripts/reproduce.sh: is training finished, and the tables beside the paper's numbers.

    python -m utils.evaluation.reproduce trained runs/reproduce-celeba/train
    python -m utils.evaluation.reproduce summary runs/reproduce-celeba

`trained` exits 0 when the run's newest checkpoint has reached the run's last step, else prints one
line and exits 2 (a run stopped by `train.max_minutes` exits 0 from train.py but is not finished).
`summary` reads the run's resolved training config (`RUN/train/config.yaml`) and the two evaluations
(`RUN/eval-mafl/results.json`, `RUN/eval-aflw/results.json`), prints a Markdown summary and writes
it to `RUN/summary.md`. The paper row is chosen by the config's `train.objective` and
`model.num_points`, e.g. objective `all` with K = 30 is Table I's "Ours, all" K = 30 row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from utils.checkpoint import read_checkpoint
from utils.config import build
from utils.errors import UserError, exit_code_of
from utils.evaluation import paper_results
from utils.files import atomic_write
from utils.run_config import RunConfig

# train.objective -> the Table I method that the objective reproduces.
OBJECTIVE_ROWS = {
    "all": "Ours, all",
    "baseline": "Baseline (their re-implementation of SAIC)",
    "inter": "+ inter-subject mapping only",
    "cycle": "+ cycle (intra-subject) only",
}


def paper_row(objective: str, k: int) -> paper_results.TableIRow | None:
    """The Table I row for a training objective and K, or None when the paper has no such row."""
    method = OBJECTIVE_ROWS.get(objective)
    return next((r for r in paper_results.TABLE_I if r.method == method and r.k == k), None)


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected the resolved config of reproduce.sh's training run")
    return yaml.safe_load(path.read_text())


def require_trained(train_dir: Path) -> None:
    """Raise a one-line `UserError` unless the newest checkpoint of `train_dir` is at the run's last step."""
    ckpt = read_checkpoint(train_dir)
    last_step = build(RunConfig, ckpt["config"]).train.total_steps
    if ckpt["step"] < last_step:
        raise UserError(f"{ckpt['path']}: training stopped at step {ckpt['step']} of {last_step} "
                        f"(train.max_minutes?); run the same command again to continue it")


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_i_lines(label: str, ours_mafl: float, ours_aflw: float,
                  row: paper_results.TableIRow | None) -> list[str]:
    """Markdown rows: ours, then the paper's matching row (or a note that there is none)."""
    lines = ["| | MAFL | AFLW |", "|---|---|---|", f"| ours: {label} | {ours_mafl:.2f} | {ours_aflw:.2f} |"]
    if row is None:
        return lines + ["| paper: no row for this objective and K | - | - |"]
    return lines + [f"| paper: {row.method}, K={row.k} | {cell(row.mafl)} | {cell(row.aflw)} |"]


def table_ii_lines(fewshot: list[dict]) -> list[str]:
    """Markdown rows of MAFL few-shot NME: ours (mean ± std over draws) beside the paper's column."""
    column = paper_results.TABLE_II_OURS
    lines = [f"| N | ours | paper {column} |", "|---|---|---|"]
    for entry in fewshot:
        fwd = entry["fwd"]
        spread = "" if fwd["std_percent"] is None else f" ± {fwd['std_percent']:.2f}"
        paper = paper_results.table_ii(column, entry["size"])
        lines.append(f"| {entry['size']} | {fwd['mean_percent']:.2f}{spread} | {cell(paper)} |")
    return lines


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected eval_regressor.py's results (run its stage again)")
    return json.loads(path.read_text())


def forward_nme(results: dict, path: Path) -> float:
    """Test NME (%) of the forward regressor fitted on all training images."""
    if "fwd" not in results["main"]:
        raise UserError(f"{path}: no forward ('fwd') result; expected eval_regressor.py run with --mode fwd or both")
    return results["main"]["fwd"]["nme_percent"]


def summary(run: Path) -> str:
    """The Markdown summary of a finished reproduce.sh run folder."""
    config = read_config(run / "train" / "config.yaml")
    objective, k = config["train"]["objective"], config["model"]["num_points"]
    mafl_path, aflw_path = run / "eval-mafl" / "results.json", run / "eval-aflw" / "results.json"
    mafl, aflw = read_json(mafl_path), read_json(aflw_path)
    label = (f"objective {objective}, K={k}, FAN {config['model']['fan_init']}, "
             f"{config['data']['image_size']} px")
    lines = [f"## Table I (test NME %, forward): {run}", "",
             *table_i_lines(label, forward_nme(mafl, mafl_path), forward_nme(aflw, aflw_path),
                            paper_row(objective, k))]
    if mafl.get("fewshot"):
        lines += ["", "## Table II (MAFL test NME %, regressor on N training images)", "",
                  *table_ii_lines(mafl["fewshot"])]
    lines += ["", f"Details: {run}/eval-mafl/results.md, {run}/eval-aflw/results.md. "
                  f"Paper numbers: {paper_results.SOURCE}."]
    return "\n".join(lines) + "\n"


def run_summary(run: Path) -> None:
    text = summary(run)
    atomic_write(run / "summary.md", lambda f: f.write(text.encode()))
    print(text, end="")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("trained", help="exit 0 if a training run reached its last step").add_argument("train_dir")
    commands.add_parser("summary", help="print and write RUN/summary.md").add_argument("run")
    args = p.parse_args(argv)
    if args.command == "trained":
        return exit_code_of(require_trained, Path(args.train_dir))
    return exit_code_of(run_summary, Path(args.run))


if __name__ == "__main__":
    sys.exit(main())
