"""Shared fixtures (helpers live in tests/helpers.py): a small synthetic face set in the CelebA + MAFL layout,
and a tiny model trained on it, each made once per session."""

from pathlib import Path

import pytest

from helpers import CONFIG, tiny_train_overrides


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), num_images=120, seed=0)


@pytest.fixture(scope="session")
def tiny_run(synthetic_root, tmp_path_factory) -> Path:
    """The run folder of a tiny model (32 px crops, K=10) trained for 2 steps without validation: cheap, and its
    points are finite and deterministic. Tests read it; one that changes a file works on a copy."""
    import torch

    import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_run")
    assert train.main(CONFIG + tiny_train_overrides(synthetic_root, out, 2) + ["validation.enabled=false"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir
