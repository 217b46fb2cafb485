#!/usr/bin/env bash
# Install only: create .venv beside this repository (if missing) and install the pinned requirements into it.
# PYTHON selects the interpreter (default python3); it must be Python 3.11 or newer.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" 2>/dev/null; then
    found=$("$PYTHON" -c "import platform; print('Python', platform.python_version())" 2>/dev/null || true)
    echo "error: PYTHON=$PYTHON is ${found:-not a Python that runs}; this repository needs Python 3.11 or newer" \
         "(e.g. PYTHON=python3.11 bash scripts/setup.sh)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
