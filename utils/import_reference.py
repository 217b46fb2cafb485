"""Kept so that `python -m utils.import_reference ...` keeps working: it runs the top-level
import_reference.py, where the tool lives (it builds a model, which nothing under utils/ does)."""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).resolve().parents[1] / "import_reference.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
