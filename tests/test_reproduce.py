"""scripts/reproduce.sh end to end, tiny: get_data.sh from file:// archives, then train, extract, tables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch

from data_archives import aflw_zip, celeba_zip
from utils.evaluation import reproduce
from utils.checkpoint import FORMAT
from utils.evaluation.reproduce import paper_row, table_ii_lines

REPO = Path(__file__).resolve().parents[1]
# configs/celeba.yaml shrunk to seconds on a CPU: no fan_109.pth, no VGG, 32 px, narrow networks, 2 steps.
TINY = ["model.fan_init=scratch", "loss.perceptual.enabled=false", "train.max_steps=2", "train.batch_size=4",
        "data.num_workers=0", "validation.enabled=false", "model.fan_features=16", "model.hourglass_depth=2",
        "model.gen_conv_dim=8", "model.gen_res_blocks=1", "data.image_size=32", "runtime.threads=1",
        "log.progress=false"]


def bash(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, EXTRACT_ARGS="--workers 0 --quiet", EVAL_ARGS="--repeats 2")
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def stages_run(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith("== ") and "skipped" not in line]


@pytest.mark.slow
def test_get_data_then_reproduce_resumes_by_stage(synthetic_root, tmp_path):
    archives = {"celeba": celeba_zip(synthetic_root, tmp_path / "celeba.zip"),
                "aflw": aflw_zip(synthetic_root, tmp_path / "aflw_release-2.zip")}
    fetched = bash("get_data.sh", ["--out", "data", "--only", "celeba,aflw",
                                   "--url", f"celeba={archives['celeba'].as_uri()}",
                                   "--url", f"aflw={archives['aflw'].as_uri()}"], tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    args = ["--celeba", "data/celeba", "--aflw", "data/aflw_release-2", "--run", "run", *TINY]
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "log.jsonl").write_text("{}\n")  # a start killed before its first checkpoint

    first = bash("reproduce.sh", args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert stages_run(first.stdout) == ["train", "extract-mafl", "extract-aflw", "eval-mafl", "eval-aflw"]
    assert "| paper: Ours, all, K=10 | 3.08 | 6.20 |" in first.stdout  # Table I row beside ours
    assert "| all | " in first.stdout and "| 3.08 |" in first.stdout  # Table II, "all" row
    assert (run / "summary.md").read_text() in first.stdout

    # A crash after training's last checkpoint but before its marker, and during the AFLW evaluation.
    for stage in ("train", "eval-aflw"):
        (run / "stages" / f"{stage}.done").unlink()
    second = bash("reproduce.sh", args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert stages_run(second.stdout) == ["train", "eval-aflw"]
    assert "already done at step 2 of 2" in second.stdout  # a finished run is not trained again
    assert "extract-mafl: finished earlier" in second.stdout

    third = bash("reproduce.sh", args, tmp_path)
    assert third.returncode == 0 and stages_run(third.stdout) == []
    assert (run / "summary.md").read_text() in third.stdout

    changed = bash("reproduce.sh", args[:-1], tmp_path)
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1
    assert "run was started with other arguments" in changed.stderr


def test_training_stopped_early_is_not_finished(tmp_path, capsys):
    # What train.max_minutes leaves: exit status 0, newest checkpoint short of the last step.
    config = {"train": {"max_steps": 0, "epochs": 2, "iters_per_epoch": 5}}
    torch.save({"format": FORMAT, "config": config, "step": 9}, tmp_path / "last.pt")
    assert reproduce.main(["trained", str(tmp_path)]) == 2
    assert "training stopped at step 9 of 10" in capsys.readouterr().err
    torch.save({"format": FORMAT, "config": config, "step": 10}, tmp_path / "last.pt")
    assert reproduce.main(["trained", str(tmp_path)]) == 0


@pytest.mark.parametrize("args, message", [
    ([], "give --celeba DIR"),
    (["--celeba", "nowhere", "--aflw", "."], "--celeba nowhere: directory not found"),
    (["--celeba", ".", "--aflw", ".", "--gpus", "0"], "--gpus 0: expected a whole number"),
    (["--celeba", ".", "--aflw", ".", "--config", "none.yaml"], "--config none.yaml: file not found"),
    (["--celeb", "."], "unknown option --celeb"),
])
def test_user_mistakes_are_one_line(args, message, tmp_path):
    result = bash("reproduce.sh", args, tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "runs").exists()


def test_paper_row_follows_objective_and_k():
    assert (paper_row("all", 30).mafl, paper_row("all", 30).aflw) == (2.89, 6.08)
    assert paper_row("baseline", 10).method.startswith("Baseline")
    assert paper_row("cycle", 10).aflw == 6.28
    assert paper_row("inter", 30) is None  # the paper has ablations for K = 10 only


def test_table_ii_lines_put_paper_beside_ours():
    fewshot = [{"size": 5, "fwd": {"mean_percent": 7.123, "std_percent": 0.5}},
               {"size": "all", "fwd": {"mean_percent": 3.2, "std_percent": None}}]
    assert table_ii_lines(fewshot)[2:] == ["| 5 | 7.12 ± 0.50 | 7.50 |", "| all | 3.20 | 3.08 |"]
