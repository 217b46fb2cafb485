"""fan_109.pth with model.fan_pretrained=auto: fetched once into the hub cache, checked by git blob id; no network.

The "server" is a file:// URL to a FAN state dict made in the test; the expected blob id is patched in.
"""

import hashlib
from pathlib import Path

import pytest
import torch

import train
import utils.pretrained
from helpers import tiny_train_overrides
from model import FAN, build_model
from utils.errors import UserError
from utils.pretrained import RemoteFile, git_blob_id, pretrained_fan_weights
from utils.run_config import ModelConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(fan_features=16, hourglass_depth=2, gen_conv_dim=4, gen_res_blocks=1)


def build_fresh(cfg: ModelConfig):
    """A fresh model of `cfg` as train.py builds it: the pretrained FAN fetched or read first, then the model."""
    return build_model(cfg, pretrained_fan=pretrained_fan_weights(cfg))


def blob_id_of(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def serve_fan(tmp_path: Path, monkeypatch, state: dict, blob_id: str | None = None) -> Path:
    """Save `state` as the server's fan_109.pth and make FAN_109 point at it, expecting `blob_id` (default: its own)."""
    source = tmp_path / "server" / "fan_109.pth"
    source.parent.mkdir(exist_ok=True)
    torch.save(state, source)
    remote = RemoteFile("fan_109.pth", source.as_uri(), blob_id or blob_id_of(source.read_bytes()), "model.fan_pretrained")
    monkeypatch.setattr(utils.pretrained, "FAN_109", remote)
    return source


def mpii_like_fan(seed: int = 0) -> dict:
    """A small FAN with a 16-joint head, the shape of SAIC's MPII model."""
    torch.manual_seed(seed)
    return FAN(num_points=16, features=16, depth=2).state_dict()


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object hello.txt


def test_auto_downloads_fan_109_once_checks_it_and_reports_only_the_output_layer(tmp_path, monkeypatch, hub, capsys):
    mpii = mpii_like_fan()
    source = serve_fan(tmp_path, monkeypatch, mpii)
    cfg = ModelConfig(num_points=10, fan_init="incremental", fan_pretrained="auto", **SMALL)
    model, report = build_fresh(cfg)
    assert (hub / "fan_109.pth").read_bytes() == source.read_bytes()
    assert [p.name for p in hub.iterdir()] == ["fan_109.pth"]  # no .part left behind
    assert "downloading fan_109.pth" in capsys.readouterr().err
    assert report.missing == [] and report.unexpected == []
    assert [s.split()[0] for s in report.skipped_shape] == ["l_0.weight", "l_0.bias"]
    assert report.summary().startswith(f"copied {len(mpii) - 2} of {len(mpii)} tensors")
    assert torch.equal(model.detector.m0.b1_2.conv1.old_weight, mpii["m0.b1_2.conv1.weight"])
    source.unlink()  # the second time it comes from the cache, checked again
    _, again = build_fresh(cfg)
    assert again.copied == report.copied and "downloading" not in capsys.readouterr().err


def test_a_download_with_another_blob_id_is_refused_and_not_kept(tmp_path, monkeypatch, hub):
    serve_fan(tmp_path, monkeypatch, mpii_like_fan(), blob_id="0" * 40)
    with pytest.raises(UserError) as info:
        build_fresh(ModelConfig(fan_pretrained="auto", **SMALL))
    message = str(info.value)
    assert "\n" not in message and "the downloaded file is not the expected fan_109.pth" in message
    assert f"and put it at {hub / 'fan_109.pth'}" in message
    assert list(hub.iterdir()) == []


def test_a_cached_file_with_another_blob_id_is_refused(tmp_path, monkeypatch, hub):
    serve_fan(tmp_path, monkeypatch, mpii_like_fan())
    hub.mkdir(parents=True)
    torch.save(mpii_like_fan(seed=1), hub / "fan_109.pth")  # another FAN under the same name
    with pytest.raises(UserError, match=r"fan_109.pth: not the expected fan_109.pth .*; delete it, then download"):
        build_fresh(ModelConfig(fan_pretrained="auto", **SMALL))


def test_offline_the_paper_config_stops_with_one_line_saying_what_to_download(tmp_path, monkeypatch, hub,
                                                                               synthetic_root, capsys):
    unreachable = (tmp_path / "no-server" / "fan_109.pth").as_uri()  # fails at once, like no network
    monkeypatch.setattr(utils.pretrained, "FAN_109",
                        RemoteFile("fan_109.pth", unreachable, "0" * 40, "model.fan_pretrained"))
    rc = train.main(["--config", str(REPO / "configs" / "celeba.yaml"), f"data.root={synthetic_root}",
                     f"log.out_dir={tmp_path / 'runs'}", "validation.enabled=false", "data.num_workers=0"])
    announce, err = capsys.readouterr().err.strip().splitlines()  # what it tried, then the one error line
    assert rc == 2 and announce.startswith("downloading fan_109.pth from")
    assert err.startswith("error: cannot download fan_109.pth (")
    assert f"download {unreachable} and put it at {hub / 'fan_109.pth'} (or set model.fan_pretrained=" in err


def test_a_pretrained_fan_of_another_architecture_is_an_error_not_a_warning(tmp_path, monkeypatch, hub):
    extra = {**mpii_like_fan(), "bl0.weight": torch.zeros(1)}
    serve_fan(tmp_path, monkeypatch, extra)
    with pytest.raises(UserError, match=r"not a pretrained FAN of this architecture .*1 tensors do not match, e.g. bl0.weight"):
        build_fresh(ModelConfig(fan_pretrained="auto", **SMALL))
    wider = dict(SMALL, fan_features=32)  # every tensor but the stem's has another shape
    with pytest.raises(UserError, match="tensors do not match"):
        build_fresh(ModelConfig(fan_pretrained="auto", **wider))


def test_a_file_without_batchnorm_counters_still_loads(tmp_path, monkeypatch, hub):
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked; everything else must still match."""
    old = {k: v for k, v in mpii_like_fan().items() if not k.endswith("num_batches_tracked")}
    serve_fan(tmp_path, monkeypatch, old)
    model, report = build_fresh(ModelConfig(fan_pretrained="auto", **SMALL))
    assert report.missing and all(k.endswith("num_batches_tracked") or k.startswith("l_0") for k in report.missing)


def test_scratch_never_needs_the_file(tmp_path, monkeypatch, hub):
    monkeypatch.setattr(utils.pretrained, "FAN_109", None)  # any use would fail
    model, report = build_fresh(ModelConfig(fan_init="scratch", fan_pretrained="auto", **SMALL))
    assert report is None and not hub.exists()


def test_a_training_run_with_auto_prints_the_load_report(tmp_path, monkeypatch, hub, synthetic_root, capsys):
    mpii = mpii_like_fan()
    serve_fan(tmp_path, monkeypatch, mpii)
    argv = ["--config", str(REPO / "configs" / "synthetic.yaml"), *tiny_train_overrides(synthetic_root, tmp_path / "runs", 2),
            "model.fan_init=incremental", "model.fan_pretrained=auto", "validation.enabled=false"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    assert f"FAN init incremental (copied {len(mpii) - 2} of {len(mpii)} tensors; skipped 2 with other shapes " \
           "(l_0.weight (16, 16, 1, 1)->(10, 16, 1, 1), l_0.bias (16,)->(10,)))" in out
