"""train.init_from: a new run starting with another run's weights, with fresh optimisers, schedules and step."""

from pathlib import Path

import pytest
import torch

import train
from helpers import tiny_train_overrides
from utils.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["--config", str(REPO / "configs" / "synthetic.yaml")]


def only_run(out_dir: Path) -> Path:
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def source_run(synthetic_root, tmp_path_factory) -> Path:
    """A 6-step run: its last.pt is the checkpoint to start from."""
    out = tmp_path_factory.mktemp("source")
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, out, 6) + ["validation.enabled=false"]) == 0
    return only_run(out)


@pytest.mark.slow
def test_init_from_loads_the_weights_and_starts_optimisers_schedule_and_step_fresh(source_run, synthetic_root,
                                                                                    tmp_path, capsys):
    source = read_checkpoint(source_run / "last.pt")
    argv = CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 3) + [
        f"train.init_from={source_run / 'last.pt'}", "log.save_init=true", "validation.enabled=false"]
    assert train.main(argv) == 0
    assert f"weights from {source_run / 'last.pt'} (its step 6)" in capsys.readouterr().out
    run = only_run(tmp_path)
    start = read_checkpoint(run / "init.pt")  # the new run before its first step
    assert start["model"].keys() == source["model"].keys()
    assert all(torch.equal(start["model"][k], source["model"][k]) for k in source["model"])
    assert start["step"] == 0 and start["data_pass"] == 0 and start["batch_in_pass"] == 0
    assert start["optim_fan"]["state"] == {} and start["optim_gen"]["state"] == {}  # no Adam moments
    assert source["optim_fan"]["state"] != {}
    assert start["sched_fan"]["last_epoch"] == 0
    end = read_checkpoint(run / "last.pt")
    assert end["step"] == 3  # its own count, not 6 + 3
    assert not torch.equal(end["model"]["detector.l_0.weight"], source["model"]["detector.l_0.weight"])
    assert train.main(["--resume", str(run), "train.max_steps=4"]) == 0  # resuming continues this run, no reload
    assert read_checkpoint(run)["step"] == 4


@pytest.mark.parametrize("override, difference", [
    ("model.num_points=7", "model.num_points=10 there, 7 here"),
    ("model.fan_features=32", "model.fan_features=16 there, 32 here"),
    ("model.fan_init=incremental", "model.fan_init=scratch there, incremental here"),
])
def test_init_from_refuses_another_k_or_architecture_in_one_line(source_run, synthetic_root, tmp_path, capsys,
                                                                 override, difference):
    argv = CONFIG + tiny_train_overrides(synthetic_root, tmp_path, 2) + [
        f"train.init_from={source_run / 'last.pt'}", "model.fan_pretrained=auto", override]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err == (f"error: train.init_from={source_run / 'last.pt'}: another architecture ({difference}); "
                   "a warm start needs the same K and networks")
