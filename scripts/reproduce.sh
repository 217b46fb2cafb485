#!/usr/bin/env bash
# One command for the paper's tables: train a config on CelebA, extract MAFL and AFLW, fit the
# regressors, and print our Table I row (and Table II, few-shot MAFL) beside the paper's numbers.
#
#   bash scripts/reproduce.sh --celeba /data/celeba --aflw /data/aflw_release-2
#   bash scripts/reproduce.sh --celeba ... --aflw ... --config configs/celeba_k30.yaml --gpus 4 train.batch_size=8
#
# Options:
#   --celeba DIR   CelebA root with Img/, Anno/, MAFL/ (scripts/get_data.sh makes it)     required
#   --aflw DIR     aflw_release-2 root                                                     required
#   --config FILE  training config (default configs/celeba.yaml: Table I, "Ours, all", K=10)
#   --run DIR      run folder (default runs/reproduce-<config name>); the same DIR resumes
#   --gpus N       processes on this machine; N > 1 trains with torchrun (train.batch_size is per
#                  process: the paper's 32 images per step are train.batch_size=32/N)
#   anything else: config overrides for train.py, e.g. model.fan_pretrained=/path/fan_109.pth
# Environment: PYTHON (default .venv/bin/python of this repository); EXTRACT_ARGS and EVAL_ARGS,
# extra flags for extract_data.py and eval_regressor.py (e.g. EXTRACT_ARGS="--workers 8").
#
# Stages: train, extract-mafl, extract-aflw, eval-mafl, eval-aflw, then the summary. Each finished
# stage writes RUN/stages/<stage>.done (atomically, by rename); after a crash, run the same command
# again: finished stages are skipped, training continues from its newest checkpoint, and a stage cut
# short is run again over the files it left (extract_data.py and eval_regressor.py with --overwrite).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}

die() { echo "error: $*" >&2; exit 2; }

CONFIG=$REPO/configs/celeba.yaml CELEBA="" AFLW="" RUN="" GPUS=1
while [ $# -gt 0 ]; do
    case $1 in
        --celeba|--aflw|--config|--run|--gpus) [ $# -ge 2 ] || die "$1 needs a value" ;;&
        --celeba) CELEBA=$2; shift 2 ;;
        --aflw) AFLW=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --run) RUN=$2; shift 2 ;;
        --gpus) GPUS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        --*) die "unknown option $1; see bash scripts/reproduce.sh --help" ;;
        *) break ;;
    esac
done
OVERRIDES=("$@")

[ -n "$CELEBA" ] || die "give --celeba DIR (the CelebA root; bash scripts/get_data.sh --out DIR makes DIR/celeba)"
[ -n "$AFLW" ] || die "give --aflw DIR (the aflw_release-2 root; bash scripts/get_data.sh makes it)"
[ -d "$CELEBA" ] || die "--celeba $CELEBA: directory not found; expected the CelebA root with Img/, Anno/, MAFL/"
[ -d "$AFLW" ] || die "--aflw $AFLW: directory not found; expected the aflw_release-2 root"
[ -f "$CONFIG" ] || [ ! -f "$REPO/$CONFIG" ] || CONFIG=$REPO/$CONFIG
[ -f "$CONFIG" ] || die "--config $CONFIG: file not found; expected a YAML config such as configs/celeba.yaml"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus $GPUS: expected a whole number of processes, 1 or more"
command -v "$PY" > /dev/null || die "$PY: no Python there; run bash scripts/setup.sh or set PYTHON"
RUN=${RUN:-runs/reproduce-$(basename "$CONFIG" .yaml)}

# The arguments that define the results; a run folder refuses a different set, so that a re-run
# never mixes stages of two experiments.
COMMAND=$(printf '%s\n' "config=$CONFIG" "celeba=$CELEBA" "aflw=$AFLW" "EXTRACT_ARGS=${EXTRACT_ARGS:-}" \
    "EVAL_ARGS=${EVAL_ARGS:-}" "${OVERRIDES[@]}")
mkdir -p "$RUN/stages"
if [ -f "$RUN/command.txt" ]; then
    [ "$(cat "$RUN/command.txt")" = "$COMMAND" ] ||
        die "$RUN was started with other arguments (see $RUN/command.txt); give the same ones, or another --run"
else
    printf '%s\n' "$COMMAND" > "$RUN/command.txt.tmp" && mv "$RUN/command.txt.tmp" "$RUN/command.txt"
fi

# stage NAME COMMAND...: run COMMAND unless RUN/stages/NAME.done exists, then write that marker.
stage() {
    local name=$1 marker=$RUN/stages/$1.done
    shift
    if [ -f "$marker" ]; then
        echo "== $name: finished earlier ($(cat "$marker")), skipped"
        return
    fi
    echo "== $name"
    local start=$SECONDS
    "$@"
    echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start)) s" > "$marker.tmp"
    mv "$marker.tmp" "$marker"
}

train() {
    local launch=("$PY")
    [ "$GPUS" -eq 1 ] || launch=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$GPUS")
    if [ -e "$RUN/train/last.pt" ] || compgen -G "$RUN/train/step_*.pt" > /dev/null; then
        "${launch[@]}" "$REPO/train.py" --resume "$RUN/train" "data.root=$CELEBA" "${OVERRIDES[@]}"
    else
        rm -rf "$RUN/train"  # a start that stopped before its first checkpoint: nothing to keep
        "${launch[@]}" "$REPO/train.py" --config "$CONFIG" "data.root=$CELEBA" "log.run_dir=$RUN/train" \
            "${OVERRIDES[@]}"
    fi
    helper trained "$RUN/train"  # train.max_minutes stops early with exit status 0
}

helper() { PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m utils.evaluation.reproduce "$@"; }

# extract SPLITS DATA_ROOT: detections of the final model, both splits, into RUN/detections.
extract() {
    # shellcheck disable=SC2086  # EXTRACT_ARGS is a list of flags
    "$PY" "$REPO/extract_data.py" --checkpoint "$RUN/train/last.pt" --data-root "$2" --splits "$1" \
        --out "$RUN/detections" --overwrite ${EXTRACT_ARGS:-}
}

# evaluate DATASET: regressor, Table I column and (MAFL) Table II, into RUN/eval-DATASET.
evaluate() {
    # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
    "$PY" "$REPO/eval_regressor.py" --dir "$RUN/detections" --dataset "$1" --out "$RUN/eval-$1" --overwrite ${EVAL_ARGS:-}
}

stage train train
stage extract-mafl extract mafl-train,mafl-test "$CELEBA"
stage extract-aflw extract aflw-train,aflw-test "$AFLW"
stage eval-mafl evaluate mafl
stage eval-aflw evaluate aflw
helper summary "$RUN"
