"""utils/import_reference.py: reference-layout state dicts made here -> our checkpoint -> extract_data.py.

The reference files are built as the reference saves them (docs/reference.md, "Checkpoints"): an incremental
FAN holding `W` but no frozen kernels, and a generator named `downsampling.*`/`main.*`.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import extract_data
import train
import utils.pretrained
from helpers import tiny_train_overrides
from datasets import build_eval_dataset
from model import FAN, Generator, ProjectedConv3x3, build_detector
from model import load_model
from utils.checkpoint import read_checkpoint
from utils.errors import UserError
from utils.geometry import heatmap_to_image_xy, soft_argmax
from import_reference import main as import_main
from utils.visualize import rescale_points_px

REPO = Path(__file__).resolve().parents[1]
K, FEATURES, DEPTH, CONV_DIM, RES_BLOCKS = 5, 16, 2, 4, 1  # tiny_train_overrides' FAN width and depth
IMAGE_SIZE = 32


def randomise_(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and BatchNorm statistic away from its initial value, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=g)
                tensor.copy_(0.5 + noise if name.endswith("running_var") else tensor + 0.1 * (noise - 0.5))


def as_reference_generator(state: dict) -> dict:
    """Our generator keys written the reference's way."""
    def rename(key: str) -> str:
        key = key.replace("encoder.layers.", "downsampling.")
        key = re.sub(r"^decoder\.(\d+)\.body\.", r"main.\1.main.", key)
        return key.replace("decoder.", "main.")
    return {rename(k): v for k, v in state.items()}


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory) -> dict:
    """model_7.fan.pth, model_7.gen.pth and the core fan_109.pth (16-joint head), in the reference layout."""
    folder = tmp_path_factory.mktemp("Exp_1")
    torch.manual_seed(0)
    core = FAN(num_points=16, features=FEATURES, depth=DEPTH).state_dict()
    fan, _ = build_detector(num_points=K, init="incremental", pretrained=core, features=FEATURES, depth=DEPTH)
    randomise_(fan, seed=1)  # W away from the identity, BatchNorm statistics trained
    fan_state = {f"module.{k}": v for k, v in fan.state_dict().items()  # saved under DataParallel
                 if not k.endswith("old_weight")}  # not a buffer in the reference: never saved
    gen = Generator(num_points=K, conv_dim=CONV_DIM, res_blocks=RES_BLOCKS)
    randomise_(gen, seed=2)
    paths = {"fan": folder / "model_7.fan.pth", "gen": folder / "model_7.gen.pth", "core": folder / "fan_109.pth"}
    for key, state in (("fan", fan_state), ("gen", as_reference_generator(gen.state_dict())), ("core", core)):
        torch.save(state, paths[key])
    return {**paths, "fan_state": fan_state, "core_state": core, "gen_module": gen}


def reference_forward_fan(fan_state: dict, core: dict) -> FAN:
    """The reference's FAN as a plain network: each conv's kernel W @ old_weight (the reference's convertBack)."""
    plain = {}
    for key, value in ((k.removeprefix("module."), v) for k, v in fan_state.items()):
        if key.endswith(".W"):
            old = core[key[:-2] + ".weight"]
            plain[key[:-2] + ".weight"] = (value @ old.reshape(old.shape[0], -1)).reshape(old.shape)
        else:
            plain[key] = value
    fan = FAN(num_points=K, features=FEATURES, depth=DEPTH)
    fan.load_state_dict(plain, strict=True)
    return fan


def import_args(files: dict, out: Path, *extra: str) -> list[str]:
    return ["--fan", str(files["fan"]), "--gen", str(files["gen"]), "--core", str(files["core"]), "--out", str(out),
            f"data.image_size={IMAGE_SIZE}", *extra]


def test_import_gives_a_self_contained_checkpoint_with_the_reference_weights(reference_files, tmp_path, capsys):
    out = tmp_path / "ours.pt"
    assert import_main(import_args(reference_files, out)) == 0
    assert "incremental FAN with K=5" in capsys.readouterr().out
    model, cfg, ckpt = load_model(out)
    assert (cfg.num_points, cfg.fan_features, cfg.hourglass_depth, cfg.gen_conv_dim, cfg.gen_res_blocks) == \
        (K, FEATURES, DEPTH, CONV_DIM, RES_BLOCKS)
    assert cfg.fan_init == "incremental" and ckpt["config"]["data"]["tight"] == 70  # configs/celeba.yaml's
    assert set(ckpt["imported_from"]) == {"fan", "gen", "core"}
    frozen = model.detector.m0.b2_plus_1.conv2
    assert isinstance(frozen, ProjectedConv3x3)
    assert torch.equal(frozen.old_weight, reference_files["core_state"]["m0.b2_plus_1.conv2.weight"])
    assert torch.equal(frozen.W, reference_files["fan_state"]["module.m0.b2_plus_1.conv2.W"])
    ours_gen, theirs_gen = model.generator.state_dict(), reference_files["gen_module"].state_dict()
    assert all(torch.equal(ours_gen[k], theirs_gen[k]) for k in theirs_gen)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_extract_data_on_an_imported_model_gives_the_reference_forward_points(reference_files, synthetic_root,
                                                                             tmp_path, bn_mode):
    out = tmp_path / "ours.pt"
    assert import_main(import_args(reference_files, out)) == 0
    (path,) = extract_data.run(extract_data.parse_args([
        "--checkpoint", str(out), "--data-root", str(synthetic_root), "--splits", "mafl-test", "--workers", "0",
        "--batch-size", "64", "--bn-mode", bn_mode, "--quiet", "--out", str(tmp_path / "detections")]))
    detected = np.load(path)["detected"]

    dataset = build_eval_dataset("mafl-test", synthetic_root, image_size=IMAGE_SIZE, tight=70)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # (N, 3, S, S), one batch
    reference = reference_forward_fan(reference_files["fan_state"], reference_files["core_state"])
    with torch.no_grad():
        scores = reference.train(bn_mode == "train")(images)  # (N, K, S/4, S/4)
    points = heatmap_to_image_xy(soft_argmax(scores, 0.1), 4).numpy()  # T = 0.1, configs/celeba.yaml
    expected = rescale_points_px(points, (IMAGE_SIZE, IMAGE_SIZE), (128, 128))
    assert detected.shape == (len(dataset), K, 2)
    assert np.abs(detected - expected).max() < 1e-3


def test_wrong_or_mismatched_files_are_one_line(reference_files, tmp_path, capsys):
    def error_of(*argv: str) -> str:
        assert import_main(list(argv)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    out = tmp_path / "ours.pt"
    other_core = tmp_path / "other_core.pth"
    torch.save(FAN(num_points=16, features=2 * FEATURES, depth=DEPTH).state_dict(), other_core)
    assert "not the core this FAN was trained from" in error_of(*import_args(dict(reference_files, core=other_core), out))
    other_gen = tmp_path / "gen_k3.pth"
    torch.save(as_reference_generator(Generator(num_points=3, conv_dim=CONV_DIM, res_blocks=1).state_dict()), other_gen)
    assert "a generator for K=3 landmarks" in error_of(*import_args(dict(reference_files, gen=other_gen), out))
    extra = tmp_path / "fan_extra.pth"
    torch.save({**reference_files["fan_state"], "module.bl0.weight": torch.zeros(1)}, extra)
    assert "unexpected ['bl0.weight']" in error_of(*import_args(dict(reference_files, fan=extra), out))
    assert "reference FAN not found" in error_of(*import_args(dict(reference_files, fan=tmp_path / "nope.pth"), out))
    assert not out.exists()


def test_a_bare_reference_file_points_to_the_importer(reference_files):
    with pytest.raises(UserError, match=r"python -m utils.import_reference --fan model_N.fan.pth --gen model_N.gen.pth"):
        read_checkpoint(reference_files["fan"])


@pytest.mark.slow
def test_an_imported_model_starts_a_new_run_with_train_init_from(reference_files, synthetic_root, tmp_path):
    imported = tmp_path / "ours.pt"
    assert import_main(import_args(reference_files, imported)) == 0
    argv = ["--config", str(REPO / "configs" / "synthetic.yaml"), *tiny_train_overrides(synthetic_root, tmp_path / "runs", 2),
            f"train.init_from={imported}", f"model.num_points={K}", f"model.gen_conv_dim={CONV_DIM}",
            "model.fan_init=incremental", "model.fan_pretrained=auto",  # auto is not fetched: the weights come from init_from
            "log.save_init=true", "validation.enabled=false"]
    assert train.main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    start, source = read_checkpoint(run / "init.pt")["model"], read_checkpoint(imported)["model"]
    assert all(torch.equal(start[k], source[k]) for k in source)


def test_an_imported_model_cannot_be_resumed_and_says_how_to_start_from_it(reference_files, tmp_path, capsys):
    imported = tmp_path / "ours.pt"
    assert import_main(import_args(reference_files, imported)) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(imported)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {imported}: no training state to resume")
    assert err.endswith(f"start a new run from its weights with train.init_from={imported}")


def test_a_finetune_model_needs_no_core(reference_files, tmp_path, monkeypatch):
    monkeypatch.setattr(utils.pretrained, "FAN_109", None)  # --core auto would fail if it were used
    fan = FAN(num_points=K, features=FEATURES, depth=DEPTH)
    randomise_(fan, seed=3)
    torch.save(fan.state_dict(), tmp_path / "model_2.fan.pth")  # finetune/scratch: plain 3x3 kernels, no W
    out = tmp_path / "ours.pt"
    assert import_main(["--fan", str(tmp_path / "model_2.fan.pth"), "--gen", str(reference_files["gen"]),
                        "--out", str(out), f"data.image_size={IMAGE_SIZE}"]) == 0
    model, cfg, ckpt = load_model(out)
    assert cfg.fan_init == "finetune" and set(ckpt["imported_from"]) == {"fan", "gen"}
    assert all(torch.equal(v, fan.state_dict()[k]) for k, v in model.detector.state_dict().items())
