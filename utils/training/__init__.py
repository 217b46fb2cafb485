"""What only train.py uses: runtime set-up, the run folder, the run log, validation, picture grids, the
resumable data order and warm starts."""
