#!/usr/bin/env bash
# Make the shipped model checkpoints/mtfl_k10.pt (and its .expected.json) from scratch: train
# configs/mtfl_cpu.yaml on MTFL (about 2 hours on a shared 2-core CPU, the model card), then export the run's last
# checkpoint with the face-crop map and named-point regressor fitted on mtfl-train photos.
#
#   bash scripts/ship_model.sh /data/MTFL
#   bash scripts/ship_model.sh /data/MTFL runtime.seed=0        # extra arguments: train.py overrides
#
# MTFL_FOLDER holds training.txt, lfw_5590/ and net_7876/ (bash scripts/get_data.sh --only mtfl).
# Environment: PYTHON (default .venv/bin/python of this repository), RUN (the training run folder,
# default runs/ship-mtfl_k10), OUT (default checkpoints/mtfl_k10.pt), EXPORT_ARGS (extra flags for
# export_model.py, e.g. "--limit 200 --force" for a smoke run: --force lets the regressors be fitted on
# fewer than the 500 faces they need). Training has no wall-time
# budget here (train.max_minutes=0), so the learning-rate decay comes at step 7,000 whatever the
# machine's speed. Run the same command again after a crash: training continues from its newest
# checkpoint, and a finished run is only exported again (replacing OUT: export_model.py --overwrite).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}

die() { echo "error: $*" >&2; exit 2; }

case ${1:-} in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") die "give the MTFL folder: bash scripts/ship_model.sh MTFL_FOLDER [train.py overrides] (the folder holding training.txt, lfw_5590/, net_7876/)" ;;
esac
MTFL=$1
shift
[ -d "$MTFL" ] || die "$MTFL: directory not found; expected the MTFL folder holding training.txt, lfw_5590/, net_7876/"
[ -f "$MTFL/training.txt" ] || die "$MTFL: no training.txt; expected the MTFL folder (bash scripts/get_data.sh --only mtfl makes it)"
command -v "$PY" > /dev/null || die "$PY: no Python there; run bash scripts/setup.sh or set PYTHON"
MTFL=$(cd "$MTFL" && pwd)
cd "$REPO"
RUN=${RUN:-runs/ship-mtfl_k10}
OUT=${OUT:-checkpoints/mtfl_k10.pt}

trained() { "$PY" -m utils.evaluation.reproduce trained "$RUN"; }

if [ -e "$RUN/last.pt" ] || compgen -G "$RUN/step_*.pt" > /dev/null; then
    trained 2> /dev/null || "$PY" train.py --resume "$RUN" "data.root=$MTFL" "$@"
else
    rm -rf "$RUN"  # a start that stopped before its first checkpoint: nothing to keep
    "$PY" train.py --config configs/mtfl_cpu.yaml "data.root=$MTFL" "log.run_dir=$RUN" train.max_minutes=0 "$@"
fi
trained  # one line and exit status 2 if the run stopped before its last step
# shellcheck disable=SC2086  # EXPORT_ARGS is a list of flags
"$PY" export_model.py --checkpoint "$RUN/last.pt" --data-root "$MTFL" --out "$OUT" --overwrite ${EXPORT_ARGS:-}
echo "shipped: $OUT and ${OUT%.pt}.expected.json (write its model card ${OUT%.pt}.md; README.md, 'Your own images')"
