"""The training objective's terms: the reconstruction loss (pixel MSE + VGG16 perceptual MSE, as the
reference computes it) and the landmark terms for training from scratch (separation, equivariance).

Reconstruction:

Terms, each summed over the (output, target) pairs the objective produces:
- pixel: MSE(output, target), mean over B*3*S*S;
- perceptual: for each of relu1_2, relu2_2, relu3_3, relu4_3 of torchvision's VGG16, MSE between the
  features of output and target (mean over B*C*H*W), weight 1 each.
VGG sees the [0, 1] RGB image without ImageNet normalisation, as the reference does
(`imagenet_normalize` switches it on). VGG is frozen and kept in eval mode. All outputs go through
it in one batched forward, and all targets in one more under no_grad: the reference makes four
calls and keeps the targets' activations. (A single forward of outputs and targets together was
slower: autograd then runs VGG's backward over the target half too; see bench/step.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.errors import UserError
from utils.geometry import HEATMAP_STRIDE, heatmap_to_fraction_xy, heatmap_to_image_xy
from utils.pretrained import fetch_imagenet_vgg16, hub_checkpoints_dir, imagenet_vgg16_url
from utils.run_config import LossConfig

VGG16_RELU_LAYERS = (3, 8, 15, 22)  # indices in vgg16().features of relu1_2, relu2_2, relu3_3, relu4_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_vgg16_cache_path() -> Path:
    """Where torchvision keeps the ImageNet VGG16 file: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth."""
    return hub_checkpoints_dir() / imagenet_vgg16_url().rsplit("/", 1)[-1]


def read_vgg16_file(path: Path) -> dict[str, Tensor]:
    """The state dict in a VGG16 file given by path."""
    if not path.is_file():
        raise UserError(f"VGG16 weights not found at {path} (loss.perceptual.weights): set it to a VGG16 state dict, "
                        "or to imagenet for torchvision's file, downloaded once into the hub cache")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: one line, not a traceback
        raise UserError(f"{path}: cannot read VGG16 weights ({type(exc).__name__}: {exc})") from None


def load_vgg16_features(weights: str) -> nn.Sequential:
    """VGG16 `features` up to relu4_3, frozen, in eval mode.

    Args:
        weights: "imagenet" (torchvision's ImageNet weights from the hub cache, downloaded there
            once and checked, see utils/pretrained.py), a path to a VGG16 state dict (whole network
            or `features` only), or "random" (smoke runs only: a randomly initialised VGG makes the
            perceptual term meaningless as a loss).
    """
    from torchvision.models import vgg16

    with torch.device("meta"):  # skip initialising the 120M-parameter classifier we never use
        features = vgg16(weights=None).features[: VGG16_RELU_LAYERS[-1] + 1]
    features.to_empty(device="cpu")
    for layer in features:
        if isinstance(layer, nn.Conv2d):  # torchvision's own VGG initialisation
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    if weights != "random":
        if weights == "imagenet":
            source, state = "VGG16 ImageNet weights", fetch_imagenet_vgg16(imagenet_vgg16_url())
        else:
            path = Path(os.path.expanduser(weights))
            source, state = str(path), read_vgg16_file(path)
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        wanted = features.state_dict()  # layers up to relu4_3; deeper layers of the file are unused
        missing = [k for k in wanted if k not in state]
        wrong = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
        if missing or wrong:
            raise UserError(f"{source}: not a VGG16 state dict (missing {missing[:3]}, wrong shapes {wrong[:3]})")
        features.load_state_dict({k: state[k] for k in wanted})
    for p in features.parameters():
        p.requires_grad_(False)
    return features.eval()


class PerceptualFeatures(nn.Module):
    """Frozen VGG16 returning the activations at relu1_2, relu2_2, relu3_3 and relu4_3."""

    def __init__(self, features: nn.Sequential, imagenet_normalize: bool = False):
        super().__init__()
        self.features = features
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualFeatures":
        super().train(mode)
        self.features.eval()  # frozen: BatchNorm-free, but keep it in eval whatever the caller does
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        x = (images - self.mean) / self.std if self.imagenet_normalize else images
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG16_RELU_LAYERS:
                taps.append(x)
        return taps


class ReconstructionLoss(nn.Module):
    """pixel_weight * pixel MSE + perceptual_weight * VGG16 perceptual MSE, summed over pairs.

    `perceptual=None` gives the pixel term only.
    """

    def __init__(self, perceptual: PerceptualFeatures | None, pixel_weight: float = 1.0, perceptual_weight: float = 1.0):
        super().__init__()
        self.perceptual = perceptual
        self.pixel_weight = pixel_weight
        self.perceptual_weight = perceptual_weight

    def forward(self, outputs: list[Tensor], targets: list[Tensor]) -> dict[str, Tensor]:
        """Returns {"pixel", "perceptual", "total"}; each pair's MSE is a mean, the pairs are summed."""
        pairs = len(outputs)
        out = torch.cat(outputs)  # (P*B, 3, S, S), all pairs have the same batch size
        target = torch.cat(targets).detach()
        pixel = pairs * F.mse_loss(out.float(), target.float())
        terms = {"pixel": pixel}
        total = self.pixel_weight * pixel
        if self.perceptual is not None:
            taps = self.perceptual(out)  # every output in one batched forward
            with torch.no_grad():  # targets: no graph, no activations kept
                target_taps = self.perceptual(target)
            perceptual = sum(pairs * F.mse_loss(f.float(), g.float()) for f, g in zip(taps, target_taps))
            terms["perceptual"] = perceptual
            total = total + self.perceptual_weight * perceptual
        terms["total"] = total
        return terms


def build_reconstruction_loss(*, perceptual: bool, weights: str = "imagenet", imagenet_normalize: bool = False,
                              pixel_weight: float = 1.0, perceptual_weight: float = 1.0) -> ReconstructionLoss:
    """The loss of the config: pixel only when `perceptual` is False, else pixel + VGG16 (`weights` as above)."""
    features = PerceptualFeatures(load_vgg16_features(weights), imagenet_normalize) if perceptual else None
    return ReconstructionLoss(features, pixel_weight, perceptual_weight)


# --------------------------------------------------------------------------------------------
# Landmark terms for training from scratch (docs/experiments.md, "Training from scratch"). Points are
# (x, y) in fractions of the image side, so bandwidths keep their meaning at any heatmap size.


def separation_loss(points_xy_frac: Tensor, bandwidth: float) -> Tensor:
    """Mean over faces and ordered pairs i != j of exp(-|p_i - p_j|^2 / (2 bandwidth^2)).

    Pushes the K points of each face apart (Zhang et al., CVPR 2018); 1 when all points coincide,
    towards 0 as they spread beyond the bandwidth.
    Example (by hand): two points 0.125 apart with bandwidth 0.125 give exp(-1/2) = 0.6065.

    Args:
        points_xy_frac: (B, K, 2) points in fractions of the image side, K >= 2.
        bandwidth: Gaussian width in fractions of the image side (> 0).
    """
    k = points_xy_frac.shape[1]
    squared = torch.cdist(points_xy_frac.float(), points_xy_frac.float()).square()  # (B, K, K)
    kernel = torch.exp(-squared / (2.0 * bandwidth**2))  # (B, K, K), 1 on the diagonal
    return (kernel.sum(dim=(1, 2)) - k).mean() / (k * (k - 1))


def apply_affine(points_xy: Tensor, matrix: Tensor) -> Tensor:
    """(B, K, 2) points through per-sample (B, 2, 3) affine maps -> (B, K, 2)."""
    return points_xy @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def equivariance_loss(points_x_px: Tensor, points_x_prime_px: Tensor, x_to_x_prime: Tensor,
                      image_size: int) -> Tensor:
    """Mean squared distance, in fractions of the image side, between x's points mapped into x'
    and the points detected on x'.

    Rewards points that follow the image content: the map between the two views is known from the
    augmentation (rotations and crop boxes), never from annotations.
    Example (by hand): on a 32-px image, a point off by (3, 4) px after mapping costs
    (5 / 32)^2 = 0.0244.

    Args:
        points_x_px, points_x_prime_px: (B, K, 2) detected points in crop pixels of x and x'.
        x_to_x_prime: (B, 2, 3) affine maps from x's crop pixels to x''s.
        image_size: crop side S in pixels.
    """
    mapped = apply_affine(points_x_px.float(), x_to_x_prime.float())  # (B, K, 2)
    return ((mapped - points_x_prime_px.float()) / image_size).square().sum(dim=-1).mean()


def concentration_loss(variance_hm: Tensor, image_size: int) -> Tensor:
    """Mean over faces and points of each softmax map's variance var_x + var_y, in squared fractions of the
    image side (Zhang et al., CVPR 2018, concentration).

    Keeps the detector's maps peaked: the soft-argmax of a flat map is pulled towards the map's centre by an
    amount that changes from image to image, which moves all points of a face together by a nuisance
    amount. Example (by hand): a variance of 2 heatmap pixels squared at stride 4 on a 32-px image is
    2 * (4 / 32)^2 = 0.03125.

    Args:
        variance_hm: (B, K) variances in heatmap pixels squared (`utils.geometry.soft_argmax_moments`).
        image_size: crop side S in pixels.
    """
    return variance_hm.float().mean() * (HEATMAP_STRIDE / image_size) ** 2


def add_landmark_terms(terms: dict[str, Tensor], rec, x_to_x_prime: Tensor, image_size: int,
                       cfg: LossConfig) -> dict[str, Tensor]:
    """The reconstruction terms plus the landmark terms that `cfg` weights above 0, weighted into "total".

    Reads the detected points (and their maps' variances) and the augmentation's view-to-view map, never
    annotated points.

    Args:
        terms: {"pixel", ..., "total"} of `ReconstructionLoss`.
        rec: the forward's `model.Reconstructions`: points_x, points_x_prime (B, K, 2) heatmap pixels and
            variance_x, variance_x_prime (B, K).
        x_to_x_prime: (B, 2, 3) affine maps from x's crop pixels to x''s.
        image_size: crop side S in pixels.
        cfg: the loss section of the run config (the weights and the separation bandwidth).
    """
    terms = dict(terms)
    points_x_hm, points_x_prime_hm = rec.points_x, rec.points_x_prime
    if cfg.separation_weight > 0:
        both_views = heatmap_to_fraction_xy(torch.cat((points_x_hm, points_x_prime_hm)), image_size)  # (2B, K, 2)
        terms["separation"] = separation_loss(both_views, cfg.separation_bandwidth)
        terms["total"] = terms["total"] + cfg.separation_weight * terms["separation"]
    if cfg.equivariance_weight > 0:
        terms["equivariance"] = equivariance_loss(heatmap_to_image_xy(points_x_hm), heatmap_to_image_xy(points_x_prime_hm),
                                                  x_to_x_prime.to(points_x_hm.device), image_size)
        terms["total"] = terms["total"] + cfg.equivariance_weight * terms["equivariance"]
    if cfg.concentration_weight > 0:
        terms["concentration"] = concentration_loss(torch.cat((rec.variance_x, rec.variance_x_prime)), image_size)
        terms["total"] = terms["total"] + cfg.concentration_weight * terms["concentration"]
    return terms
