#!/usr/bin/env bash
# The main job on the built-in synthetic face set, on CPU, end to end:
#   install -> generate faces -> train configs/synthetic.yaml -> extract detections for the
#   MAFL-layout train and test splits (trained and untrained detector) -> ridge regressor ->
#   NME table (ours, mean training shape, untrained detector) and pictures under the run folder.
# Extra arguments are config overrides for train.py, e.g. train.max_steps=200 for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
DATA=${DATA:-data/synthetic}
RUN=${RUN:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}
NUM_IMAGES=${NUM_IMAGES:-6000}
"$PY" -m datasets.synthetic --out "$DATA" --num-images "$NUM_IMAGES" --seed 0 --reuse
"$PY" train.py --config configs/synthetic.yaml data.root="$DATA" log.run_dir="$RUN" log.save_init=true "$@"
for model in last init; do
    "$PY" extract_data.py --checkpoint "$RUN/$model.pt" --data-root "$DATA" --splits mafl-train,mafl-test \
        --out "$RUN/detections-$model" --workers 1
done
"$PY" eval_regressor.py --dir "$RUN/detections-last" --dataset mafl --paper-table none \
    --compare "untrained detector=$RUN/detections-init" --out "$RUN/eval" --label "ours (synthetic, K=10)"
echo "pictures: $RUN/eval/test_faces.png and $RUN/train_*.png; tables: $RUN/eval/results.md"
