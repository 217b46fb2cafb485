"""scripts/gpu_check.sh on a machine without CUDA: one line, exit 0, nothing run or written; a PYTHON without
torch is one line and exit 2. (On a GPU machine it is run by hand: the README's GPU section.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def run_script(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=python, OUT=str(tmp_path / "out"), CUDA_VISIBLE_DEVICES="")
    return subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_without_cuda_it_says_so_in_one_line_and_runs_nothing(tmp_path):
    done = run_script(tmp_path, sys.executable)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("gpu_check: no CUDA device") and not done.stderr
    assert not (tmp_path / "out").exists()


def test_a_python_without_torch_is_one_line_and_exit_2(tmp_path):
    done = run_script(tmp_path, str(tmp_path / "no-python"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot import torch" in done.stderr
    assert done.stdout == ""


def test_the_script_parses_and_runs_each_part_the_issue_asks_for():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    for setting in ("--device cuda --compile", "loss.perceptual.weights=random", "runtime.amp=bf16",
                    "runtime.channels_last=true", "runtime.compile=true", "--resume", "torch.distributed.run",
                    "extract_data.py", "eval_regressor.py", 'PYTHON=${PYTHON:-.venv/bin/python}'):
        assert setting in text, setting
    assert "pip" not in text.replace("pipefail", "")  # installs nothing
