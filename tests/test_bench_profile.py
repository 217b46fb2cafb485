"""bench/profile_step.py: the phases it reports add up to the step it times."""

import time

import pytest
import torch

from bench import profile_step
from utils.config import load_config
from utils.run_config import RunConfig
from datasets import build_training_pairs


def test_phases_add_up_to_the_step(synthetic_root):
    cfg = load_config(RunConfig, "configs/synthetic.yaml", [f"data.root={synthetic_root}", "train.batch_size=4"])
    dataset = build_training_pairs(cfg.data, cfg.runtime.seed)
    ms = profile_step.profile_phases(cfg, dataset, steps=2, warmup=1)
    inside = ["detector forward", "generator forward", "rest (Python, soft-argmax, rendering)", "losses", "backward",
              "optimiser"]
    assert all(ms[name] >= 0 for name in inside) and ms["data"] > 0
    assert sum(ms[name] for name in inside) == pytest.approx(ms["step without data"], rel=0.05)


def test_the_clock_times_every_call_of_a_hooked_module():
    class Sleeper(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.02)
            return x

    clock, sleeper = profile_step.PhaseClock(), Sleeper()
    clock.hook(sleeper, "sleeper")
    sleeper(1), sleeper(2)
    assert 0.04 <= clock.seconds["sleeper"] < 0.06


def test_main_prints_the_table_and_refuses_a_bad_key(synthetic_root, capsys):
    assert profile_step.main(["--config", "configs/synthetic.yaml", f"data.root={synthetic_root}",
                              "train.batch_size=4", "--steps", "1", "--warmup", "0"]) == 0
    assert "| backward |" in capsys.readouterr().out
    assert profile_step.main(["--config", "configs/synthetic.yaml", "train.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
