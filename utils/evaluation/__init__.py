"""What only eval_regressor.py and scripts/reproduce.sh use: the detections files, the regressor protocol,
the report and the paper's numbers."""
