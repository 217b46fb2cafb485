import dataclasses
from typing import Literal

import pytest

from train import TrainConfig
from utils.config import build, load_config, parse_overrides, to_dict
from utils.errors import UserError


def test_overrides_parse_as_yaml_values():
    tree = parse_overrides(["train.lr_fan=0.5", "model.num_points=30", "train.betas=[0, 0.9]", "model.fan_pretrained=null"])
    assert tree == {"train": {"lr_fan": 0.5, "betas": [0, 0.9]}, "model": {"num_points": 30, "fan_pretrained": None}}


def test_config_file_with_base_and_overrides():
    cfg = load_config(TrainConfig, "configs/celeba_k30.yaml", ["train.lr_fan=1e-4", "train.betas=[0.5, 0.99]"])
    assert cfg.model.num_points == 30
    assert cfg.model.fan_init == "incremental" and cfg.data.image_size == 128  # from the base file
    assert cfg.train.lr_fan == 1e-4 and isinstance(cfg.train.lr_fan, float)
    assert cfg.train.betas == (0.5, 0.99)
    assert cfg.train.lr_gen == 1e-3


def test_every_shipped_config_loads():
    from pathlib import Path

    for path in sorted(Path("configs").glob("*.yaml")):
        cfg = load_config(TrainConfig, path)
        assert cfg.train.objective in ("all", "baseline", "inter", "cycle"), path
    rows = {p: load_config(TrainConfig, f"configs/celeba_{p}.yaml").train.objective for p in ("baseline", "inter", "cycle")}
    assert rows == {"baseline": "baseline", "inter": "inter", "cycle": "cycle"}


def test_round_trip_through_a_dict():
    cfg = load_config(TrainConfig, "configs/synthetic.yaml")
    assert build(TrainConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("override, message", [
    ("train.lr_fann=1e-4", r"unknown config key 'train.lr_fann' \(did you mean 'train.lr_fan'\?\)"),
    ("trian.lr_fan=1e-4", r"unknown config key 'trian'"),
    ("train.batch_size=abc", r"config key 'train.batch_size': expected int, got 'abc'"),
    ("train.batch_size=3.5", r"expected int, got 3.5"),
    ("train.objective=everything", r"'train.objective': expected one of 'all', 'baseline', 'inter', 'cycle'"),
    ("train.betas=[0.9]", r"'train.betas': expected a list of 2 values"),
    ("data.flip=maybe", r"'data.flip': expected bool"),
    ("model=3", r"'model': expected a section"),
    ("lr_fan", r"expected section.key=value"),
])
def test_config_errors_are_one_line(override, message):
    with pytest.raises(UserError, match=message) as info:
        load_config(TrainConfig, "configs/synthetic.yaml", [override])
    assert "\n" not in str(info.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_points: 10\n  temperature: [1\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(TrainConfig, bad)
    with pytest.raises(UserError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


def test_literal_and_optional_types():
    @dataclasses.dataclass(frozen=True)
    class C:
        mode: Literal["a", "b"] = "a"
        path: str | None = None
        ratio: float = 1.0

    assert build(C, {"mode": "b", "path": None, "ratio": 2}) == C("b", None, 2.0)
    with pytest.raises(UserError, match="expected str or null"):
        build(C, {"path": 3})


def test_scratch_config_keeps_the_paper_settings_and_adds_the_landmark_terms():
    paper = load_config(TrainConfig, "configs/celeba.yaml")
    scratch = load_config(TrainConfig, "configs/celeba_scratch.yaml")
    assert scratch.model.fan_init == "scratch" and scratch.model.fan_pretrained is None
    assert scratch.data == paper.data and scratch.train == paper.train and scratch.data.image_size == 128
    assert scratch.loss.separation_weight > 0 and scratch.loss.equivariance_weight > 0
    assert paper.loss.separation_weight == paper.loss.equivariance_weight == 0  # the paper's objective unchanged
    for name in ("celeba", "celeba_baseline", "celeba_inter", "celeba_cycle", "celeba_k30", "celeba_k50", "mtfl",
                 "aflw"):
        cfg = load_config(TrainConfig, f"configs/{name}.yaml")
        assert cfg.loss.separation_weight == cfg.loss.equivariance_weight == 0, name
