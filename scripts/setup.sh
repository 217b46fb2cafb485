#!/usr/bin/env bash
# Create .venv beside this repository (if missing) and install the pinned requirements into it.
# PYTHON selects the interpreter (default python3, 3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
