import pytest
import torch

from losses import build_reconstruction_loss
from model import (
    FAN, OBJECTIVES, Generator, LandmarkAutoencoder, ProjectedConv3x3, build_detector, count_parameters, derangement,
)
from utils.state_dicts import unwrap_state_dict


def tiny_model(init="scratch", num_points=4):
    """A CPU-sized model: same topology, narrow FAN, short hourglass, small generator."""
    torch.manual_seed(0)
    pretrained = FAN(num_points=num_points, features=32, depth=2).state_dict() if init != "scratch" else None
    detector, _ = build_detector(num_points=num_points, init=init, pretrained=pretrained, features=32, depth=2)
    generator = Generator(num_points=num_points, conv_dim=8, res_blocks=2)
    return LandmarkAutoencoder(detector=detector, generator=generator, temperature=1.0, heatmap_s=0.5)


# ---------------------------------------------------------------- parameter counts

def test_fan_parameter_count_scratch_k10():
    assert count_parameters(FAN(num_points=10)) == 6_234_762


def test_fan_trainable_parameter_count_incremental_k10():
    fan, _ = build_detector(num_points=10, init="incremental", pretrained=FAN(num_points=10).state_dict())
    assert count_parameters(fan, trainable_only=True) == 514_698
    w_params = sum(m.W.numel() for m in fan.modules() if isinstance(m, ProjectedConv3x3))
    assert w_params == 380_928


@pytest.mark.parametrize("k, expected", [(10, 2_424_424), (30, 3_124_189), (50, 3_918_354)])
def test_generator_parameter_counts(k, expected):
    assert count_parameters(Generator(num_points=k)) == expected


def test_fan_output_shape_and_reference_names():
    fan = FAN(num_points=10)
    keys = fan.state_dict().keys()
    for name in ("conv1.weight", "bn1.running_mean", "conv2.conv1.weight", "conv4.downsample.2.weight",
                 "m0.b1_4.conv1.weight", "m0.b2_plus_1.bn3.weight", "m0.b3_1.conv3.weight", "top_m_0.bn1.weight",
                 "conv_last0.bias", "bn_end0.weight", "l_0.weight"):
        assert name in keys
    assert fan(torch.rand(2, 3, 128, 128)).shape == (2, 10, 32, 32)


# ---------------------------------------------------------------- initialisation modes

def test_incremental_starts_as_the_pretrained_network():
    torch.manual_seed(0)
    pretrained = FAN(num_points=3, features=32, depth=2).eval()
    incremental, _ = build_detector(num_points=3, init="incremental", pretrained=pretrained.state_dict(),
                                    features=32, depth=2)
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(incremental.eval()(x), pretrained(x), atol=1e-5)
    frozen = [n for n, _ in incremental.named_buffers() if n.endswith("old_weight")]
    assert len(frozen) == 3 * 11  # 4 ConvBlocks + 7 in a depth-2 hourglass, three 3x3 convs each
    assert not any(n.endswith("old_weight") for n, _ in incremental.named_parameters())


def test_incremental_checkpoint_round_trip_needs_no_pretrained_file():
    torch.manual_seed(0)
    trained, _ = build_detector(num_points=3, init="incremental", features=32, depth=2,
                                pretrained=FAN(num_points=3, features=32, depth=2).state_dict())
    with torch.no_grad():  # make W differ from the identity, as after training
        for m in trained.modules():
            if isinstance(m, ProjectedConv3x3):
                m.W.add_(0.01 * torch.randn_like(m.W))
    state = trained.state_dict()
    fresh = FAN(num_points=3, features=32, depth=2, projected=True)
    fresh.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_reference_state_dict_with_16_joint_head_loads_and_reports_the_head():
    torch.manual_seed(1)
    mpii_like = FAN(num_points=16).state_dict()
    mpii_like = {f"module.{k}": v for k, v in mpii_like.items()}  # DataParallel-saved files carry a prefix
    fan, report = build_detector(num_points=10, init="finetune", pretrained=unwrap_state_dict({"state_dict": mpii_like}))
    skipped = " ".join(report.skipped_shape)
    assert "l_0.weight" in skipped and "l_0.bias" in skipped
    assert len(report.skipped_shape) == 2
    assert "l_0.weight" in report.summary()
    assert torch.equal(fan.state_dict()["m0.b1_4.conv1.weight"], mpii_like["module.m0.b1_4.conv1.weight"])
    assert not torch.equal(fan.state_dict()["l_0.weight"][:10], mpii_like["module.l_0.weight"][:10])


def test_unwrap_state_dict_accepts_wrappers_and_prefixes():
    sd = {"module.conv1.weight": torch.zeros(1), "epoch": 3}
    assert list(unwrap_state_dict({"state_dict": sd})) == ["conv1.weight"]


def test_pretrained_modes_need_weights_and_unknown_modes_fail():
    with pytest.raises(ValueError, match="needs pretrained"):
        build_detector(num_points=10, init="incremental")
    with pytest.raises(ValueError, match="unknown FAN init"):
        build_detector(num_points=10, init="frozen")


# ---------------------------------------------------------------- auxiliary subject

def test_derangement_has_no_fixed_points_and_is_a_permutation():
    for n in range(2, 40):
        for seed in range(25):
            perm = derangement(n, torch.Generator().manual_seed(seed))
            assert sorted(perm.tolist()) == list(range(n))
            assert not (perm == torch.arange(n)).any()


def test_derangement_is_seeded_and_varies():
    a = derangement(32, torch.Generator().manual_seed(3))
    b = derangement(32, torch.Generator().manual_seed(3))
    c = derangement(32, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_derangement_rejects_a_batch_of_one():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_permute_and_third_pass_give_the_same_reconstructions_in_train_mode():
    model = tiny_model().train()
    x, xp = torch.rand(6, 3, 64, 64), torch.rand(6, 3, 64, 64)
    aux = derangement(6, torch.Generator().manual_seed(0))
    a = model(x, xp, aux, "all", "permute")
    b = model(x, xp, aux, "all", "third_pass")
    for out_a, out_b in zip(a.outputs, b.outputs):
        assert torch.allclose(out_a, out_b, atol=1e-5)


def test_all_objective_renders_through_the_auxiliary_subject():
    """The intermediate image must depend on a's landmarks: changing aux_index changes it.

    Eval mode, so that BatchNorm does not mix samples and each row depends on its own inputs only.
    """
    model = tiny_model().eval()
    x, xp = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    r1 = model(x, xp, torch.tensor([1, 0, 3, 2]), "all")
    r2 = model(x, xp, torch.tensor([1, 2, 3, 0]), "all")
    assert torch.allclose(r1.intermediates["x_with_aux_points"][:1], r2.intermediates["x_with_aux_points"][:1])
    assert not torch.allclose(r1.intermediates["x_with_aux_points"][1:], r2.intermediates["x_with_aux_points"][1:])
    assert [t.data_ptr() for t in r1.targets] == [x.data_ptr(), xp.data_ptr()]


# ---------------------------------------------------------------- one optimisation step per objective

@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("init", ["scratch", "incremental"])
def test_one_step_of_each_objective_gives_every_trainable_parameter_a_gradient(objective, init):
    model = tiny_model(init=init).train()
    loss_fn = build_reconstruction_loss(perceptual=True, weights="random")
    x, xp = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    rec = model(x, xp, derangement(4, torch.Generator().manual_seed(0)), objective)
    terms = loss_fn(rec.outputs, rec.targets)
    assert torch.isfinite(terms["total"]) and set(terms) == {"pixel", "perceptual", "total"}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.9), weight_decay=5e-4)
    optimizer.zero_grad()
    terms["total"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert no_grad == []
    assert all(p.grad is None for p in loss_fn.parameters())
    before = model.detector.l_0.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.detector.l_0.weight)


@pytest.mark.slow
def test_full_size_paper_objective_runs_on_cpu():
    torch.manual_seed(0)
    detector, _ = build_detector(num_points=10)
    model = LandmarkAutoencoder(detector=detector, generator=Generator(num_points=10)).train()
    x, xp = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    rec = model(x, xp, torch.tensor([1, 0]), "all")
    assert [o.shape for o in rec.outputs] == [(2, 3, 128, 128)] * 2
    assert rec.points_x.shape == (2, 10, 2)
    assert all(0.0 <= float(o.detach().min()) and float(o.detach().max()) <= 1.0 for o in rec.outputs)
