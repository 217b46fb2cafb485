"""utils/dataset_registry.py is the one list of data sets and splits: every place that offers a choice of them
derives it from there, and every split it names has a reader."""

import pytest

import eval_regressor
import extract_data
from datasets import build_train_dataset, load_records
from utils.config import config_keys
from utils.dataset_registry import (BENCHMARKS, EVAL_SPLITS, LAYOUT_SPLITS, SPLIT_LAYOUTS, TRAINING_SETS,
                                    Benchmark)
from utils.errors import UserError
from utils.evaluation.detections import dir_inputs, parse_split
from utils.run_config import RunConfig


def test_every_split_belongs_to_one_layout():
    assert len(EVAL_SPLITS) == len(set(EVAL_SPLITS)) == len(SPLIT_LAYOUTS)
    assert {SPLIT_LAYOUTS[s] for s in EVAL_SPLITS} == set(LAYOUT_SPLITS)


def test_training_sets_train_and_validate_on_known_splits():
    for name, training in TRAINING_SETS.items():
        assert training.split in EVAL_SPLITS, name
        assert training.fit_split in ("",) + EVAL_SPLITS and training.eval_split in ("",) + EVAL_SPLITS, name
        if training.eval_split:
            assert training.fit_split and SPLIT_LAYOUTS[training.eval_split] == SPLIT_LAYOUTS[training.split]
    assert TRAINING_SETS["mtfl"].eval_split == "mtfl-val" and TRAINING_SETS["folder"].fit_split == ""


def test_benchmarks_are_train_and_test_splits_named_as_the_detection_files_expect():
    for name, benchmark in BENCHMARKS.items():
        assert parse_split(benchmark.train_split, name) == (name, "train")
        for split in benchmark.test_splits:
            assert parse_split(split, name)[0] == name and parse_split(split, name)[1] in ("val", "test")
            assert SPLIT_LAYOUTS[split] == SPLIT_LAYOUTS[benchmark.train_split]


def test_the_config_choices_come_from_the_registry():
    keys = config_keys(RunConfig)
    assert keys["data.dataset"].choices == tuple(TRAINING_SETS)
    assert keys["validation.fit_split"].choices == keys["validation.eval_split"].choices == ("",) + EVAL_SPLITS


def test_the_command_line_choices_come_from_the_registry(capsys):
    dataset_action = next(a for a in eval_regressor.build_parser()._actions if a.dest == "dataset")
    assert tuple(dataset_action.choices) == tuple(BENCHMARKS)
    with pytest.raises(SystemExit):
        extract_data.parse_args(["--help"])
    assert ", ".join(EVAL_SPLITS) in " ".join(capsys.readouterr().out.split())


def test_every_split_and_training_set_has_a_reader(tmp_path):
    """An unknown name is refused by name; every registered one reaches its reader (which then wants files)."""
    for split in EVAL_SPLITS:
        with pytest.raises(UserError) as info:
            load_records(split, tmp_path / "nowhere")
        assert "unknown data split" not in str(info.value) and "nowhere" in str(info.value), split
    for name in TRAINING_SETS:
        with pytest.raises(UserError) as info:
            build_train_dataset(name, tmp_path / "nowhere")
        assert "unknown training data set" not in str(info.value), name
    with pytest.raises(UserError, match="unknown data split 'mafl-val'"):
        load_records("mafl-val", tmp_path)
    with pytest.raises(UserError, match="unknown training data set 'imagenet'"):
        build_train_dataset("imagenet", tmp_path)


def test_dir_inputs_takes_the_first_test_split_present(tmp_path, monkeypatch):
    assert dir_inputs(tmp_path, "mtfl") == (tmp_path / "mtfl-train.npz", tmp_path / "mtfl-val.npz")  # none there
    (tmp_path / "mtfl-val.npz").touch()
    assert dir_inputs(tmp_path, "mtfl")[1] == tmp_path / "mtfl-val.npz"
    (tmp_path / "mtfl-test.npz").touch()
    assert dir_inputs(tmp_path, "mtfl")[1] == tmp_path / "mtfl-test.npz"
    monkeypatch.setitem(BENCHMARKS, "toy", Benchmark("toy-train", ("toy-test",)))
    assert dir_inputs(tmp_path, "toy") == (tmp_path / "toy-train.npz", tmp_path / "toy-test.npz")
