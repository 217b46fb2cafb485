"""Shared fixtures: a small synthetic face set in the CelebA + MAFL layout, made once per session."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), num_images=120, seed=0)


def tiny_train_overrides(root: Path, out_dir: Path, steps: int) -> list[str]:
    """configs/synthetic.yaml shrunk to seconds on a CPU: 32 px crops, narrow networks, batch 8."""
    return [f"data.root={root}", f"log.out_dir={out_dir}", f"train.max_steps={steps}", "train.batch_size=8",
            "data.image_size=32", "data.num_workers=0", "model.fan_features=16", "model.gen_conv_dim=8",
            "model.gen_res_blocks=1", "log.progress=false", "runtime.threads=1", "runtime.deterministic=true",
            "validation.num_fit=40", "validation.num_eval=20", "validation.batch_size=20"]
