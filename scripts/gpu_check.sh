#!/usr/bin/env bash
# The GPU path in one command, about 10 minutes on one modern GPU, offline (nothing is downloaded):
#   1. python -m bench.step --device cuda --compile (a training step timed, eager and compiled);
#   2. a short training run of the paper's networks (configs/celeba.yaml: FAN with 256 features in the
#      incremental mode, from random "pretrained" weights) on synthetic faces at 128 px, with
#      loss.perceptual.weights=random, runtime.amp=bf16 runtime.channels_last=true runtime.compile=true,
#      stopped half way and resumed once;
#   3. torchrun DDP over every visible GPU (one is fine), ranks compared at the end;
#   4. extraction and evaluation of the resumed run.
# It prints one summary table (step, result, seconds, last line of its log) and exits 1 if any step failed.
#
#   bash scripts/gpu_check.sh               # PYTHON=.venv/bin/python by default; installs nothing
#   OUT=runs/gpu-check bash scripts/gpu_check.sh
#
# On a machine where torch.cuda.is_available() is false it says so in one line and exits 0, running nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "error: $PYTHON cannot import torch; install first (bash scripts/setup.sh) or set PYTHON" >&2
    exit 2
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False for $PYTHON); nothing run"
    exit 0
fi
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
OUT=${OUT:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
DATA="$OUT/data"
RUN="$OUT/run"
FAN="$OUT/fan_random.pth"
# configs/celeba.yaml at 128 px, shrunk in steps and validation only; the networks are the paper's
TRAIN=(--config configs/celeba.yaml data.root="$DATA" data.dataset=synthetic data.num_workers=4
       model.fan_pretrained="$FAN" loss.perceptual.weights=random train.batch_size=16
       validation.every=50 validation.num_fit=200 validation.num_eval=100 log.image_every=50
       log.checkpoint_every=50 log.progress=false runtime.device=cuda)
GPU_SETTINGS=(runtime.amp=bf16 runtime.channels_last=true runtime.compile=true)

ROWS=()
FAILED=0
step() {  # step NAME COMMAND...: run it with its output in $OUT/NAME.log, and add a row to the summary
    local name=$1 start rc last
    shift
    start=$(date +%s)
    echo "[$name] $*"
    "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c 1-90)
    if [ "$rc" -eq 0 ]; then
        ROWS+=("| $name | ok | $(($(date +%s) - start)) | ${last//|/\\|} |")
    else
        ROWS+=("| $name | FAILED (exit $rc) | $(($(date +%s) - start)) | ${last//|/\\|} |")
        FAILED=1
        tail -n 20 "$OUT/$name.log" | sed "s/^/    [$name] /"
    fi
}

step bench "$PYTHON" -m bench.step --device cuda --compile
step data "$PYTHON" -m datasets.synthetic --out "$DATA" --num-images 1200 --seed 0 --reuse
step fan "$PYTHON" -c "import sys, torch, model; torch.save(model.FAN(num_points=10).state_dict(), sys.argv[1])" "$FAN"
step train "$PYTHON" train.py "${TRAIN[@]}" "${GPU_SETTINGS[@]}" log.run_dir="$RUN" train.max_steps=100
step resume "$PYTHON" train.py --resume "$RUN" train.max_steps=200
step ddp "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" train.py "${TRAIN[@]}" \
    runtime.amp=bf16 runtime.channels_last=true log.run_dir="$OUT/run-ddp" train.max_steps=60
step extract "$PYTHON" extract_data.py --checkpoint "$RUN/last.pt" --data-root "$DATA" --splits mafl-train,mafl-test \
    --out "$OUT/detections" --device cuda --quiet
step eval "$PYTHON" eval_regressor.py --dir "$OUT/detections" --dataset mafl --sizes 1,10,100,all --out "$OUT/eval"

echo
echo "GPU check: $("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), \
'| torch', torch.__version__, '| CUDA', torch.version.cuda)"); logs in $OUT/"
echo
echo "| step | result | seconds | last line of its log |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit "$FAILED"
