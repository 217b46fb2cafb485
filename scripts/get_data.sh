#!/usr/bin/env bash
# Download, unpack and check the paper's data sets: CelebA with the MAFL lists (about 7.8 GB), AFLW
# (aflw_release-2, about 1.1 GB) and MTFL, each in the layout the loaders in datasets/ read.
#   bash scripts/get_data.sh --out /data                       # then data.root=/data/celeba
#   bash scripts/get_data.sh --out /data --only celeba,aflw    # what scripts/reproduce.sh needs
#   bash scripts/get_data.sh --out /data --url celeba=file:///mirror/celeba.zip
# It prints how much it will fetch and stops first if the disk lacks room; re-running it continues
# where it stopped. All options: bash scripts/get_data.sh --help. PYTHON selects the interpreter.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# Relative paths in the arguments stay relative to the caller's folder: no cd.
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-$REPO/.venv/bin/python}" -m datasets.get_data "$@"
