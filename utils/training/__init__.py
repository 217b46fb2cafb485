"""What only train.py uses: runtime set-up, the run folder and its lock, the run log, stopping on a signal,
validation, picture grids, the resumable data order and warm starts."""
