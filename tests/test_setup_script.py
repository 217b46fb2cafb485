"""scripts/setup.sh, the install-only command, refuses a Python older than 3.11 in one line before it creates or
installs anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OLD_PYTHON = """#!/usr/bin/env bash
# a stand-in for Python 3.9: fails the version check, prints its version when asked
case "$2" in
    *platform*) echo "Python 3.9.7" ;;
    *) exit 1 ;;
esac
"""


def run_setup(python: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=dict(os.environ, PYTHON=str(python)),
                          capture_output=True, text=True, timeout=60)


def test_an_old_python_is_refused_in_one_line_naming_both_versions(tmp_path):
    python = tmp_path / "python3.9"
    python.write_text(OLD_PYTHON)
    python.chmod(0o755)
    done = run_setup(python)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Python 3.9.7" in done.stderr and "3.11 or newer" in done.stderr


def test_a_python_that_does_not_run_is_refused_in_one_line(tmp_path):
    done = run_setup(tmp_path / "missing")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a Python that runs" in done.stderr
