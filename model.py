"""The landmark autoencoder: FAN detector, heatmap bottleneck, appearance encoder and generator.

Faithful to the reference (docs/reference.md, "Architecture"). The training objective (the paper's
core block, and the three ablations of its Table I) is `LandmarkAutoencoder.forward`; the losses are in
losses.py; optimisation happens only in train.py. `build_model` makes a model from its config and
`load_model` from a checkpoint. Nothing here downloads: pretrained weights come in as state dicts.

Shape legend: B batch, K landmarks, C channels, S image side (128), M heatmap side (S / HEATMAP_STRIDE).
Points are (x, y) in heatmap pixels unless a name says otherwise (see utils/geometry.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.checkpoint import is_detector_only, read_checkpoint
from utils.config import build
from utils.errors import UserError
from utils.geometry import render_gaussian_heatmaps, soft_argmax_moments
from utils.run_config import AUX_SOURCES, FAN_INITS, OBJECTIVES, AuxSource, FanInit, ModelConfig, Objective
from utils.state_dicts import PretrainedWeights

OUTPUT_LAYER_KEYS = ("l_0.weight", "l_0.bias")  # the FAN's K-channel head: its shape depends on K


# --------------------------------------------------------------------------------------------
# FAN detector (docs/reference.md)


class ProjectedConv3x3(nn.Module):
    """A frozen 3x3 kernel recombined by a learned out x out matrix (SAIC's "incremental" mode).

    Effective kernel = reshape(W @ reshape(old_weight, (out, in*9))), with W initialised to the
    identity, so the layer starts as the pretrained convolution. `old_weight` is a registered
    buffer: checkpoints are self-contained (the reference's are not).
    """

    def __init__(self, in_channels: int, out_channels: int, old_weight: Tensor | None = None):
        super().__init__()
        if old_weight is None:  # filled by load_state_dict from a checkpoint
            old_weight = torch.zeros(out_channels, in_channels, 3, 3)
        self.register_buffer("old_weight", old_weight.detach().clone())  # (out, in, 3, 3)
        self.W = nn.Parameter(torch.eye(out_channels))  # (out, out)

    def forward(self, x: Tensor) -> Tensor:
        out_ch = self.old_weight.shape[0]
        kernel = (self.W @ self.old_weight.reshape(out_ch, -1)).reshape(self.old_weight.shape)
        return F.conv2d(x, kernel, padding=1)


def _conv3x3(in_channels: int, out_channels: int, projected: bool) -> nn.Module:
    if projected:
        return ProjectedConv3x3(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation block with three 3x3 branches concatenated, plus a residual (docs/reference.md)."""

    def __init__(self, in_channels: int, out_channels: int, projected: bool = False):
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, half, projected)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter, projected)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter, projected)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))  # (B, C/2, ., .)
        out2 = self.conv2(F.relu(self.bn2(out1)))  # (B, C/4, ., .)
        out3 = self.conv3(F.relu(self.bn3(out2)))  # (B, C/4, ., .)
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual  # (B, C, ., .)


class HourGlass(nn.Module):
    """Recursive hourglass: average-pool down, nearest-neighbour up (docs/reference.md).

    Module names follow the reference (`b1_4`, `b2_4`, ..., `b2_plus_1`, `b3_1`) so that
    pretrained state dicts load.
    """

    def __init__(self, depth: int, features: int, projected: bool = False):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features, projected))
            self.add_module(f"b2_{level}", ConvBlock(features, features, projected))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features, projected))
            self.add_module(f"b3_{level}", ConvBlock(features, features, projected))

    def _level(self, level: int, x: Tensor) -> Tensor:
        upper = self._modules[f"b1_{level}"](x)  # (B, C, h, w)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2))  # (B, C, h/2, w/2)
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")  # (B, C, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """One-stack hourglass landmark detector: (B, 3, S, S) image -> (B, K, S/4, S/4) raw scores.

    With the default `features=256, depth=4` this is exactly the reference's FAN(1, n_points=K)
    (6,234,762 parameters for K=10). Smaller `features`/`depth` are for CPU-sized configs.
    `projected=True` builds the incremental form (every 3x3 conv a `ProjectedConv3x3`); use
    `build_detector` to create it from pretrained weights.
    """

    def __init__(self, *, num_points: int, features: int = 256, depth: int = 4, projected: bool = False):
        super().__init__()
        f1, f2 = features // 4, features // 2
        self.conv1 = nn.Conv2d(3, f1, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(f1)
        self.conv2 = ConvBlock(f1, f2, projected)
        self.conv3 = ConvBlock(f2, f2, projected)
        self.conv4 = ConvBlock(f2, features, projected)
        self.m0 = HourGlass(depth, features, projected)
        self.top_m_0 = ConvBlock(features, features, projected)
        self.conv_last0 = nn.Conv2d(features, features, 1)
        self.bn_end0 = nn.BatchNorm2d(features)
        self.l_0 = nn.Conv2d(features, num_points, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(images)))  # (B, f/4, S/2, S/2)
        x = F.avg_pool2d(self.conv2(x), 2)  # (B, f/2, S/4, S/4)
        x = self.conv4(self.conv3(x))  # (B, f, S/4, S/4)
        x = self.top_m_0(self.m0(x))  # (B, f, S/4, S/4)
        x = F.relu(self.bn_end0(self.conv_last0(x)))
        return self.l_0(x)  # (B, K, S/4, S/4) raw scores


class LoadReport(NamedTuple):
    """What `load_matching` did with a pretrained state dict."""

    copied: list[str]
    skipped_shape: list[str]  # in both, shapes differ (e.g. a 16-joint head when K=10)
    unexpected: list[str]  # in the file, not in the model
    missing: list[str]  # in the model, not in the file: left at their initial values

    def summary(self) -> str:
        parts = [f"copied {len(self.copied)} of {len(self.copied) + len(self.skipped_shape) + len(self.missing)} tensors"]
        if self.skipped_shape:
            parts.append(f"skipped {len(self.skipped_shape)} with other shapes ({', '.join(self.skipped_shape)})")
        if self.missing:
            parts.append(f"{len(self.missing)} left initialised ({', '.join(self.missing[:6])}"
                         f"{', ...' if len(self.missing) > 6 else ''})")
        if self.unexpected:
            parts.append(f"ignored {len(self.unexpected)} unknown ({', '.join(self.unexpected[:6])}"
                         f"{', ...' if len(self.unexpected) > 6 else ''})")
        return "; ".join(parts)


def load_matching(module: nn.Module, state_dict: Mapping[str, Tensor]) -> LoadReport:
    """Copy every tensor whose key and shape match; report everything else (nothing is silent)."""
    own = module.state_dict()
    copied, skipped, unexpected = [], [], []
    for key, value in state_dict.items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            skipped.append(f"{key} {tuple(value.shape)}->{tuple(own[key].shape)}")
        else:
            own[key] = value.to(own[key].dtype)
            copied.append(key)
    module.load_state_dict(own)
    missing = [k for k in own if k not in state_dict]
    return LoadReport(copied, skipped, unexpected, missing)


def check_pretrained_fit(report: LoadReport, source: str) -> None:
    """Stop unless the pretrained file filled every FAN tensor but the K-dependent output layer `l_0`.

    BatchNorm's `num_batches_tracked` counters may be absent (files saved before PyTorch 0.4.1 lack them);
    they only count updates and do not change the outputs.
    """
    stray = ([k for k in report.missing if k not in OUTPUT_LAYER_KEYS and not k.endswith(".num_batches_tracked")]
             + report.unexpected
             + [s for s in report.skipped_shape if s.split(" ", 1)[0] not in OUTPUT_LAYER_KEYS])
    if stray:
        raise UserError(f"{source}: not a pretrained FAN of this architecture (model.fan_features, "
                        f"model.hourglass_depth): {len(stray)} tensors do not match, e.g. {', '.join(stray[:3])}")


def convert_to_incremental(fan: FAN) -> FAN:
    """Freeze every 3x3 conv of every ConvBlock as a `ProjectedConv3x3` with W = identity (in place)."""
    for block in [m for m in fan.modules() if isinstance(m, ConvBlock)]:
        for name in ("conv1", "conv2", "conv3"):
            conv = getattr(block, name)
            if isinstance(conv, nn.Conv2d):
                out_ch, in_ch = conv.weight.shape[:2]
                setattr(block, name, ProjectedConv3x3(in_ch, out_ch, conv.weight.data))
    return fan


def build_detector(*, num_points: int, init: FanInit = "scratch", pretrained: Mapping[str, Tensor] | None = None,
                   features: int = 256, depth: int = 4) -> tuple[FAN, LoadReport | None]:
    """Create the FAN in one of the three initialisation modes of SAIC (docs/reference.md).

    - scratch: random initialisation, `pretrained` must be None;
    - finetune: load the matching tensors of `pretrained`, train everything;
    - incremental: load `pretrained`, then freeze each 3x3 kernel and learn W (out x out).
    Returns the detector and the load report (None for scratch).
    """
    if init not in FAN_INITS:
        raise ValueError(f"unknown FAN init {init!r}; expected one of {FAN_INITS}")
    fan = FAN(num_points=num_points, features=features, depth=depth)
    report = None
    if init != "scratch":
        if pretrained is None:
            raise ValueError(f"FAN init {init!r} needs pretrained weights (fan_109.pth)")
        report = load_matching(fan, pretrained)
    if init == "incremental":
        convert_to_incremental(fan)
    return fan, report


# --------------------------------------------------------------------------------------------
# Appearance encoder and generator 


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class AppearanceEncoder(nn.Module):
    """(B, 3, S, S) image -> (B, 4*conv_dim, S/4, S/4) appearance features F ."""

    def __init__(self, conv_dim: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            *_conv_bn_relu(3, conv_dim, 7, 1, 3),
            *_conv_bn_relu(conv_dim, 2 * conv_dim, 4, 2, 1),
            *_conv_bn_relu(2 * conv_dim, 4 * conv_dim, 4, 2, 1),
        )
        self.out_channels = 4 * conv_dim

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN added to the input, no ReLU after the sum ."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Renders an image from (appearance image, K heatmaps): Psi(Phi_E(x), H) in [0, 1].

    Holds the appearance encoder, as the reference's Generator does (so the parameter count of
    "the generator" is encoder + decoder: 2,424,424 for K=10). Widths: C = 4*conv_dim + K, then
    C//2 and C//4 (138/69/34 for K=10).
    """

    def __init__(self, *, num_points: int, conv_dim: int = 32, res_blocks: int = 6):
        super().__init__()
        self.encoder = AppearanceEncoder(conv_dim)
        c = self.encoder.out_channels + num_points
        layers: list[nn.Module] = [nn.BatchNorm2d(c)]
        layers += [ResidualBlock(c) for _ in range(res_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers += [nn.Conv2d(c, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, appearance_images: Tensor, heatmaps: Tensor) -> Tensor:
        features = self.encoder(appearance_images)  # (B, 4*conv_dim, M, M)
        out = self.decoder(torch.cat((features, heatmaps.to(features.dtype)), dim=1))  # (B, 3, S, S) in [-1, 1]
        return 0.5 * (out + 1.0)  # (B, 3, S, S) in [0, 1]


# --------------------------------------------------------------------------------------------
# The auxiliary subject 


def derangement(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random permutation of range(n) with no fixed point (no sample is its own auxiliary).

    Rejection sampling: a random permutation is a derangement with probability ~1/e, so this takes
    about e draws on average. Returns a (n,) int64 tensor on the CPU.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n} (use batch size >= 2)")
    ident = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == ident).any()):
            return perm


# --------------------------------------------------------------------------------------------
# The full model and the training objective 


@dataclasses.dataclass(frozen=True)
class Reconstructions:
    """What one training forward produces. The loss compares `outputs[i]` with `targets[i]`."""

    outputs: list[Tensor]  # final reconstructions, each (B, 3, S, S) in [0, 1]
    targets: list[Tensor]  # the images they should equal
    points_x: Tensor  # (B, K, 2) detected on x, heatmap pixels
    points_x_prime: Tensor  # (B, K, 2) detected on x', heatmap pixels
    intermediates: dict[str, Tensor]  # images rendered on the way (no loss on them), for pictures
    variance_x: Tensor | None = None  # (B, K) softmax variance of each point on x, heatmap pixels squared
    variance_x_prime: Tensor | None = None  # (B, K) the same on x'


class LandmarkDetector(nn.Module):
    """The detector and its bottleneck: images -> K points (soft-argmax) and their Gaussian heatmaps.

    What extraction and detect.py run; `LandmarkAutoencoder` adds the generator. Its state dict is the
    `detector.*` part of the autoencoder's, so a detector-only checkpoint is those keys.
    """

    def __init__(self, *, detector: FAN, temperature: float = 0.1, heatmap_s: float = 0.5):
        super().__init__()
        self.detector = detector
        self.temperature = temperature
        self.heatmap_s = heatmap_s

    def detect(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) images -> points (B, K, 2) in heatmap pixels and heatmaps (B, K, M, M)."""
        points, heatmaps, _ = self.detect_with_variance(images)
        return points, heatmaps

    def detect_with_variance(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`detect` plus each point's softmax variance (B, K), heatmap pixels squared (`soft_argmax_moments`)."""
        scores = self.detector(images)  # (B, K, M, M)
        points, variance = soft_argmax_moments(scores, self.temperature)  # (B, K, 2), (B, K)
        heatmaps = render_gaussian_heatmaps(points, scores.shape[-1], self.heatmap_s)  # (B, K, M, M)
        return points, heatmaps, variance


class LandmarkAutoencoder(LandmarkDetector):
    """Detector + bottleneck + generator, with the training objectives of the paper's Table I.

    Objectives (x, x' two views of one image; a the auxiliary subject, another image of the batch;
    G(appearance image, heatmaps) the generator; H(.) detected heatmaps):
    - all (the paper): x_a = G(x, H(a)), x'_a = G(x', H(a));
      loss on G(x'_a, H(x)) vs x and G(x_a, H(x')) vs x'.
    - baseline (SAIC): G(x', H(x)) vs x.
    - inter ("+ inter-subject mapping only"): the one path x -> a's landmarks -> x' landmarks:
      G(G(x, H(a)), H(x')) vs x'.
    - cycle ("+ cycle only"): the intra-subject cycle through the other view's landmarks, without
      an auxiliary subject: G(G(x', H(x)), H(x')) vs x' and G(G(x, H(x')), H(x)) vs x.
    The paper describes each ablation in one line; `inter` and `cycle` are our reading of them
    (docs/experiments.md, "Table I ablations").
    """

    def __init__(self, *, detector: FAN, generator: Generator, temperature: float = 0.1, heatmap_s: float = 0.5):
        super().__init__(detector=detector, temperature=temperature, heatmap_s=heatmap_s)
        self.generator = generator

    def forward(self, x: Tensor, x_prime: Tensor, aux_index: Tensor, objective: Objective = "all",
                aux_source: AuxSource = "permute") -> Reconstructions:
        """One training forward.

        Args:
            x, x_prime: (B, 3, S, S) two views of the same B images, RGB in [0, 1].
            aux_index: (B,) a derangement: sample b's auxiliary subject is x[aux_index[b]].
            objective: one of OBJECTIVES (see the class docstring).
            aux_source: `permute` takes the auxiliary heatmaps as H(x)[aux_index] (one detector pass
                fewer; identical in train mode because BatchNorm statistics ignore order);
                `third_pass` runs the detector on x[aux_index] as the reference does.
        """
        points, heat, variance = self.detect_with_variance(x)
        points_p, heat_p, variance_p = self.detect_with_variance(x_prime)

        def made(outputs: list[Tensor], targets: list[Tensor], intermediates: dict[str, Tensor]) -> Reconstructions:
            return Reconstructions(outputs, targets, points, points_p, intermediates, variance, variance_p)

        G = self.generator
        if objective == "baseline":
            return made([G(x_prime, heat)], [x], {})
        if objective == "cycle":
            x_mid, xp_mid = G(x, heat_p), G(x_prime, heat)
            return made([G(xp_mid, heat_p), G(x_mid, heat)], [x_prime, x],
                        {"x_with_x_prime_points": x_mid, "x_prime_with_x_points": xp_mid})
        if objective not in ("all", "inter"):
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        aux_index = aux_index.to(x.device)
        if aux_source == "permute":
            heat_aux = heat[aux_index]  # (B, K, M, M), gradients kept
        elif aux_source == "third_pass":
            heat_aux = self.detect(x[aux_index])[1]
        else:
            raise ValueError(f"unknown aux_source {aux_source!r}; expected one of {AUX_SOURCES}")
        x_aux = G(x, heat_aux)  # appearance of x, geometry of a
        if objective == "inter":
            return made([G(x_aux, heat_p)], [x_prime], {"x_with_aux_points": x_aux})
        xp_aux = G(x_prime, heat_aux)  # appearance of x', geometry of a
        x_prime_rec = G(x_aux, heat_p)  # back to x' (cycle through the auxiliary subject)
        x_rec = G(xp_aux, heat)
        return made([x_rec, x_prime_rec], [x, x_prime], {"x_with_aux_points": x_aux, "x_prime_with_aux_points": xp_aux})


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# Construction from a config or a checkpoint


def build_model(cfg: ModelConfig, *, pretrained_fan: PretrainedWeights | None = None,
                from_checkpoint: bool = False) -> tuple[LandmarkAutoencoder, LoadReport | None]:
    """The model of a config.

    A fresh model starts its FAN from `pretrained_fan` in the finetune and incremental modes
    (`utils.pretrained.pretrained_fan_weights` reads or fetches it) and stops unless it fills every FAN
    tensor but the K-dependent output layer. With `from_checkpoint=True` the structure is built empty
    (incremental buffers included) for `load_state_dict`, and no pretrained weights are used.
    """
    if from_checkpoint:
        detector, report = FAN(num_points=cfg.num_points, features=cfg.fan_features, depth=cfg.hourglass_depth,
                               projected=cfg.fan_init == "incremental"), None
    else:
        detector, report = build_detector(num_points=cfg.num_points, init=cfg.fan_init,
                                          pretrained=pretrained_fan.state_dict if pretrained_fan else None,
                                          features=cfg.fan_features, depth=cfg.hourglass_depth)
        if report is not None:
            check_pretrained_fit(report, pretrained_fan.source)
    generator = Generator(num_points=cfg.num_points, conv_dim=cfg.gen_conv_dim, res_blocks=cfg.gen_res_blocks)
    model = LandmarkAutoencoder(detector=detector, generator=generator, temperature=cfg.temperature,
                                heatmap_s=cfg.heatmap_s)
    return model, report


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[LandmarkAutoencoder | LandmarkDetector, ModelConfig, dict]:
    """Load a trained model in one call: (model in eval mode on `device`, its ModelConfig, checkpoint).

    `path` is a checkpoint file or a run folder (`utils.checkpoint.find_checkpoint`). A detector-only
    checkpoint (`utils.checkpoint.is_detector_only`, e.g. the shipped one) gives a `LandmarkDetector`,
    any other the whole `LandmarkAutoencoder`; both `detect`. Needs no pretrained FAN file:
    incremental checkpoints carry their frozen kernels.
    A hand-edited checkpoint (no config.model, no weights, weights that do not fit its config) is a one-line
    UserError naming the file.
    """
    ckpt = read_checkpoint(path)
    config, weights, source = ckpt.get("config"), ckpt.get("model"), ckpt["path"]
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise UserError(f"{source}: no model config in this checkpoint (config.model); a hand-edited file? Use a file "
                        "that train.py, export_model.py or import_reference.py wrote")
    try:
        cfg = build(ModelConfig, dict(config["model"]), prefix="model.")
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    model, _ = build_model(cfg, from_checkpoint=True)
    if is_detector_only(ckpt):
        model = LandmarkDetector(detector=model.detector, temperature=cfg.temperature, heatmap_s=cfg.heatmap_s)
    if mismatch := weights_mismatch(model, weights):
        raise UserError(f"{source}: its weights do not fit its config (model.num_points={cfg.num_points}): {mismatch}")
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), cfg, ckpt


def weights_mismatch(model: nn.Module, weights: object) -> str:
    """What keeps `weights` (a checkpoint's "model" entry) from loading into `model` strictly, in a few words:
    '' if nothing, else the missing, unexpected or misshapen keys (first two of each)."""
    if not isinstance(weights, Mapping):
        return "no weights (the 'model' entry is missing)"
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    misshapen = [f"{k} {tuple(weights[k].shape)} instead of {tuple(expected[k].shape)}" for k in expected
                 if k in weights and getattr(weights[k], "shape", None) != expected[k].shape]
    parts = [f"{what} {', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''}" for what, keys in
             (("missing", missing), ("unexpected", unexpected), ("shape of", misshapen)) if keys]
    return "; ".join(parts)
