"""Helpers below the model and the scripts: nothing here imports model.py, losses.py or a script.

- shared by training, extraction and evaluation: `config` (YAML + overrides into dataclasses),
  `run_config` (the training config's keys), `dataset_registry` (data sets and splits), `landmarks`
  (the five annotated points), `geometry` (points <-> heatmaps, unit conversions), `metrics` (NME,
  ridge, collapse measures), `checkpoint` (the checkpoint format), `extraction` (detected points of a
  split), `visualize`, `device`, `files`, `errors`, `pretrained` (fetching weights);
- `utils.training`: what only train.py uses (runtime, run folder and its lock, log, stopping on a signal,
  validation, pictures, sampler, warm start);
- `utils.evaluation`: what only eval_regressor.py and scripts/reproduce.sh use (detections files,
  the protocol, the report, the paper's numbers).
"""
