"""curves.png holds what log.jsonl says (loss terms, validation NME, spread, part lock, learning rates), the
command redraws it for any run folder, and a training run writes it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import tiny_train_overrides
from utils.plot_run import CURVES_FILE, curves_figure, main, read_log, write_curves

REPO = Path(__file__).resolve().parents[1]


def write_log(run_dir: Path) -> None:
    """Three training records, two validations, an event and a line torn by a kill."""
    lines = [json.dumps({"step": s, "epoch": s / 10, "total": 1.0 / s, "pixel": 0.5 / s, "separation": 0.1,
                         "lr_fan": 1e-3, "lr_gen": 2e-3, "images_per_s": 50.0}) for s in (1, 2, 3)]
    lines.insert(2, json.dumps({"step": 2, "val_nme": 9.5, "val_spread": 0.4, "val_part_lock": 0.8,
                                "best_val_nme": 9.5}))
    lines += [json.dumps({"step": 3, "val_nme": 7.0, "val_spread": 0.6, "val_part_lock": 0.5, "best_val_nme": 7.0}),
              json.dumps({"step": 3, "event": "non_finite_loss", "detail": "total=nan"}), '{"step": 4, "tot']
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.jsonl").write_text("\n".join(lines) + "\n")


def lines_of(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_the_curves_are_the_logged_numbers(tmp_path):
    write_log(tmp_path)
    training, validation = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in training] == [1, 2, 3] and [r["step"] for r in validation] == [2, 3]
    loss_ax, nme_ax, collapse_ax, lr_ax = curves_figure(training, validation, "run").axes
    losses = lines_of(loss_ax)
    assert list(losses) == ["total", "pixel", "separation"] and loss_ax.get_yscale() == "log"
    assert losses["pixel"] == ([1, 2, 3], [0.5, 0.25, 0.5 / 3])
    assert lines_of(nme_ax)["validation NME"] == ([2, 3], [9.5, 7.0])
    collapse = lines_of(collapse_ax)
    assert collapse["spread (0: one blob)"][1] == [0.4, 0.6]
    assert collapse["part lock (0: rides on a face part)"][1] == [0.8, 0.5]
    assert lines_of(lr_ax)["generator"][1] == [2e-3] * 3


def test_the_command_writes_curves_png_and_refuses_a_folder_without_a_log_in_one_line(tmp_path, capsys):
    write_log(tmp_path / "run")
    assert main([str(tmp_path / "run")]) == 0
    image = cv2.imread(str(tmp_path / "run" / CURVES_FILE))
    assert image is not None and image.shape[1] > 800
    assert f"wrote {tmp_path / 'run' / CURVES_FILE}" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'nothing'}: no log.jsonl there")


def test_an_empty_log_still_gives_a_picture(tmp_path):
    (tmp_path / "log.jsonl").write_text("")
    assert write_curves(tmp_path).is_file()


@pytest.mark.slow
def test_training_writes_curves_png_at_validation_and_at_the_end(synthetic_root, tmp_path, monkeypatch):
    import train
    import utils.training.validation as validation

    drawn = []
    monkeypatch.setattr(validation, "write_curves_quietly", lambda run_dir: drawn.append(run_dir))
    argv = ["--config", str(REPO / "configs" / "synthetic.yaml"), *tiny_train_overrides(synthetic_root, tmp_path, 4),
            "log.log_every=1", "validation.every=2"]
    assert train.main(argv) == 0
    run_dir = next(tmp_path.glob("*/log.jsonl")).parent
    assert drawn == [run_dir, run_dir]  # steps 2 and 4
    image = cv2.imread(str(run_dir / CURVES_FILE))  # the end of the run draws it whatever the validations did
    assert image is not None and np.ptp(image) > 0
