import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import (
    PerceptualFeatures, ReconstructionLoss, build_reconstruction_loss, load_vgg16_features, torchvision_vgg16_cache_path,
)
from utils.errors import UserError


@pytest.fixture(scope="module")
def random_vgg():
    torch.manual_seed(0)
    return load_vgg16_features("random")


def test_vgg_is_frozen_in_eval_mode_and_cut_at_relu4_3(random_vgg):
    features = PerceptualFeatures(random_vgg)
    features.train()
    assert not features.features.training
    assert all(not p.requires_grad for p in features.parameters())
    taps = features(torch.rand(1, 3, 64, 64))
    assert [t.shape[1:] for t in taps] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)]
    assert all(float(t.min()) >= 0 for t in taps)  # taps are after ReLUs
    assert len(random_vgg) == 23


def test_batched_loss_equals_the_reference_sum_of_separate_terms(random_vgg):
    features = PerceptualFeatures(random_vgg)
    loss = ReconstructionLoss(features)
    outs = [torch.rand(2, 3, 32, 32, requires_grad=True) for _ in range(2)]
    targets = [torch.rand(2, 3, 32, 32) for _ in range(2)]
    terms = loss(outs, targets)
    pixel = sum(F.mse_loss(o, t) for o, t in zip(outs, targets))
    perceptual = sum(F.mse_loss(fo, ft) for o, t in zip(outs, targets) for fo, ft in zip(features(o), features(t)))
    assert torch.allclose(terms["pixel"], pixel)
    assert torch.allclose(terms["perceptual"], perceptual, rtol=1e-5)
    assert torch.allclose(terms["total"], pixel + perceptual, rtol=1e-5)
    terms["total"].backward()
    assert all(o.grad is not None for o in outs)


def test_imagenet_normalisation_switch_changes_the_features(random_vgg):
    img = torch.rand(1, 3, 32, 32)
    plain = PerceptualFeatures(random_vgg)(img)[0]
    normalised = PerceptualFeatures(random_vgg, imagenet_normalize=True)(img)[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert not torch.allclose(plain, normalised)
    assert torch.allclose(normalised, PerceptualFeatures(random_vgg)((img - mean) / std)[0])


def test_pixel_only_loss_has_no_vgg():
    loss = build_reconstruction_loss(perceptual=False)
    out, target = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    terms = loss([out], [target])
    assert set(terms) == {"pixel", "total"}
    assert terms["total"].item() == pytest.approx(0.25)


def test_offline_imagenet_weights_fail_with_one_line_naming_file_place_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    unreachable = (tmp_path / "no-server" / "vgg16-397923af.pth").as_uri()  # fails at once, like no network
    monkeypatch.setattr(losses, "imagenet_vgg16_url", lambda: unreachable)
    with pytest.raises(UserError) as info:
        build_reconstruction_loss(perceptual=True, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot download VGG16 ImageNet weights")
    assert f"put vgg16-397923af.pth from {unreachable} into {tmp_path / 'hub' / 'checkpoints'}/" in message
    assert "weights=random" in message
    with pytest.raises(UserError, match="not found at .*nowhere.pth"):
        load_vgg16_features(str(tmp_path / "nowhere.pth"))


def vgg_file_named_by_its_hash(folder, state, prefix=None):
    """A VGG16 state dict saved as vgg16-<first 8 hex of its SHA-256>.pth, torchvision's naming."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "vgg16.pth"
    torch.save(state, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    return plain.rename(folder / f"vgg16-{prefix or digest[:8]}.pth")


def test_imagenet_weights_are_downloaded_once_into_the_hub_cache_and_hash_checked(tmp_path, monkeypatch, random_vgg):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    source = vgg_file_named_by_its_hash(tmp_path / "server", {f"features.{k}": v for k, v in random_vgg.state_dict().items()})
    monkeypatch.setattr(losses, "imagenet_vgg16_url", lambda: source.as_uri())
    assert torch.equal(load_vgg16_features("imagenet")[0].weight, random_vgg[0].weight)
    cached = tmp_path / "home" / "hub" / "checkpoints" / source.name
    assert cached.read_bytes() == source.read_bytes()
    source.unlink()  # the second time it comes from the cache
    assert torch.equal(load_vgg16_features("imagenet")[21].weight, random_vgg[21].weight)


def test_imagenet_weights_with_a_wrong_hash_are_refused_and_not_cached(tmp_path, monkeypatch, random_vgg):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    source = vgg_file_named_by_its_hash(tmp_path / "server", random_vgg.state_dict(), prefix="00000000")
    monkeypatch.setattr(losses, "imagenet_vgg16_url", lambda: source.as_uri())
    with pytest.raises(UserError, match="invalid hash value .*put vgg16-00000000.pth from"):
        load_vgg16_features("imagenet")
    assert list((tmp_path / "home" / "hub" / "checkpoints").iterdir()) == []


def test_weights_load_from_a_path_and_from_the_torchvision_cache(tmp_path, monkeypatch, random_vgg):
    features_only = random_vgg.state_dict()  # keys "0.weight", ...: a file of `features` alone
    path = tmp_path / "vgg.pth"
    torch.save(features_only, path)
    assert torch.equal(load_vgg16_features(str(path))[0].weight, features_only["0.weight"])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torchvision_vgg16_cache_path().parent.mkdir(parents=True)
    whole_network_keys = {f"features.{k}": v for k, v in features_only.items()}  # as torchvision saves it
    torch.save(whole_network_keys, torchvision_vgg16_cache_path())
    assert torch.equal(load_vgg16_features("imagenet")[21].weight, features_only["21.weight"])


def test_a_file_that_is_not_vgg_is_reported(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not a VGG16 state dict"):
        load_vgg16_features(str(path))
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read VGG16 weights"):
        load_vgg16_features(str(path))


# ------------------------------------------------------------------------------ landmark terms

def test_separation_loss_by_hand():
    from losses import separation_loss
    two = torch.tensor([[[0.0, 0.0], [0.125, 0.0]]])  # one bandwidth apart
    assert separation_loss(two, 0.125).item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert separation_loss(torch.zeros(3, 10, 2), 0.1).item() == pytest.approx(1.0)
    # Three points: gaps 0.1, 0.2, 0.1 at bandwidth 0.1: mean of exp(-0.5), exp(-2), exp(-0.5).
    three = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]]])
    expected = (2 * math.exp(-0.5) + math.exp(-2.0)) / 3
    assert separation_loss(three, 0.1).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("k", [10, 30, 50])
def test_separation_loss_prefers_spread_points_at_many_landmarks(k):
    from losses import separation_loss
    spread_out = torch.rand(4, k, 2, generator=torch.Generator().manual_seed(k))
    blob = 0.5 + 0.01 * spread_out
    points = blob.clone().requires_grad_(True)
    loss = separation_loss(points, 0.08)
    loss.backward()
    assert separation_loss(spread_out, 0.08) < 0.5 < loss.item()
    moved = points.detach() - 1e-3 * points.grad  # a gradient step spreads the blob
    assert rms(moved) > rms(blob)


def rms(points):
    return (points - points.mean(dim=1, keepdim=True)).square().sum(-1).mean().sqrt().item()


def test_equivariance_loss_by_hand():
    from losses import equivariance_loss
    shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]])  # x' = x + (2, -1)
    points_x = torch.tensor([[[5.0, 5.0], [10.0, 3.0]]])
    exact = points_x + torch.tensor([2.0, -1.0])
    assert equivariance_loss(points_x, exact, shift, 32).item() == pytest.approx(0.0)
    off = exact + torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # first point off by 5 px
    assert equivariance_loss(points_x, off, shift, 32).item() == pytest.approx((5 / 32) ** 2 / 2)


def test_concentration_loss_by_hand():
    from losses import concentration_loss

    variance = torch.full((3, 10), 2.0)  # 2 heatmap pixels squared at stride 4 on a 32-px crop
    assert concentration_loss(variance, 32).item() == pytest.approx(2 * (4 / 32) ** 2)
    assert concentration_loss(torch.tensor([[0.0, 4.0]]), 64).item() == pytest.approx(2 * (4 / 64) ** 2)
