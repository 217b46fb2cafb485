"""Evaluation metrics and the linear-regressor protocol (docs/reference.md, "Evaluation"), as small pure
numpy functions.

Shape legend: N images (M for a test set), K detected landmarks, P annotated points (5 for faces:
left eye, right eye, nose, left mouth corner, right mouth corner), D and E flattened feature sizes.

Coordinate conventions:
- "_px" arrays hold (x, y) in crop pixels at the 128-px crop scale, pixel-centre convention (the
  centre of the top-left pixel is (0, 0)); detected and annotated points share this space.
- "_norm" arrays are in the reference regressor's units: the reference divides by the heatmap stride
  4 to reach 32-px heatmap units (`Gtr / 4`), then takes x / 32 - 0.5, i.e. x_px / 128 - 0.5 (exactly:
  all three divisors are powers of two). The affine map does not change NME with a bias, but it fixes
  the scale at which `reg` acts.

Errors are fractions of the inter-ocular distance (eye centres); reports multiply by 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.errors import UserError
from utils.geometry import EVAL_CROP_SIZE
from utils.landmarks import LEFT_EYE, RIGHT_EYE

SOLVERS = ("closed-form", "sklearn")


# ---------------------------------------------------------------------------------------------
# Unit conversions
# ---------------------------------------------------------------------------------------------


def crop_px_to_norm(points_xy_px: np.ndarray, crop_size: int = EVAL_CROP_SIZE) -> np.ndarray:
    """Crop pixels -> regressor units, x / crop_size - 0.5 (the reference's x / 4 / 32 - 0.5 at 128 px).

    Any shape (..., 2) -> same shape, float64. Example: 64 px -> 0.0, 0 px -> -0.5.
    """
    return np.asarray(points_xy_px, dtype=np.float64) / crop_size - 0.5


def norm_to_crop_px(points_xy_norm: np.ndarray, crop_size: int = EVAL_CROP_SIZE) -> np.ndarray:
    """Regressor units -> crop pixels; the inverse of `crop_px_to_norm`. Any shape (..., 2)."""
    return (np.asarray(points_xy_norm, dtype=np.float64) + 0.5) * crop_size


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def interocular_distance(
    annotated_xy: np.ndarray, left_eye: int = LEFT_EYE, right_eye: int = RIGHT_EYE
) -> np.ndarray:
    """Distance between the annotated eye centres: (N, P, 2) -> (N,), in the points' units."""
    annotated_xy = np.asarray(annotated_xy, dtype=np.float64)
    return np.linalg.norm(annotated_xy[:, left_eye] - annotated_xy[:, right_eye], axis=-1)


def normalised_point_errors(pred_xy: np.ndarray, gt_xy: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Euclidean error of every point divided by its image's normaliser.

    Args:
        pred_xy, gt_xy: (N, P, 2) points (x, y) in the same units.
        norm: (N,) per-image normaliser in those units (the inter-ocular distance).
    Returns:
        (N, P) errors as fractions of `norm`.
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)
    gt_xy = np.asarray(gt_xy, dtype=np.float64)
    if pred_xy.shape != gt_xy.shape:
        raise ValueError(f"pred_xy {pred_xy.shape} and gt_xy {gt_xy.shape} differ in shape")
    dist = np.linalg.norm(pred_xy - gt_xy, axis=-1)  # (N, P)
    return dist / np.asarray(norm, dtype=np.float64)[:, None]


def nme(
    pred_xy: np.ndarray, gt_xy: np.ndarray, left_eye: int = LEFT_EYE, right_eye: int = RIGHT_EYE
) -> np.ndarray:
    """Per-image NME: mean over points of ||pred - gt||, divided by the ground-truth eye distance.

    Args:
        pred_xy, gt_xy: (N, P, 2) points (x, y) in the same units (any scale: NME is scale-free).
        left_eye, right_eye: indices into P of the eye centres of `gt_xy`.
    Returns:
        (N,) errors as fractions (multiply by 100 for the paper's percent).

    Example (worked by hand): gt = (0, 0), (10, 0), (5, 5), so the eye distance is 10;
    pred = (3, 4), (10, 0), (5, -1) is off by 5, 0 and 6 px; NME = (5 + 0 + 6) / 3 / 10 = 0.36667.

    >>> gt = np.array([[[0, 0], [10, 0], [5, 5]]], dtype=float)
    >>> pred = np.array([[[3, 4], [10, 0], [5, -1]]], dtype=float)
    >>> round(float(nme(pred, gt)[0]), 5)
    0.36667
    """
    iod = interocular_distance(gt_xy, left_eye, right_eye)  # (N,)
    return normalised_point_errors(pred_xy, gt_xy, iod).mean(axis=1)


def backward_error(
    pred_xy: np.ndarray,
    detected_xy: np.ndarray,
    annotated_xy: np.ndarray,
    left_eye: int = LEFT_EYE,
    right_eye: int = RIGHT_EYE,
    reference_divisor: int | None = None,
) -> np.ndarray:
    """Per-image backward error: mean over the K detected points of ||pred_k - det_k|| / IOD_GT.

    The reference sums over K and divides by IOD * 10 with 10 hard-coded (docs/reference.md, bug 8), which is
    right only for K = 10. We divide by K; pass `reference_divisor=10` to reproduce the reference.

    Args:
        pred_xy: (N, K, 2) detected points as predicted from the annotations.
        detected_xy: (N, K, 2) the detector's points; same units as `pred_xy`.
        annotated_xy: (N, P, 2) annotated points, for the inter-ocular distance; same units.
    Returns:
        (N,) errors as fractions of the annotated eye distance.
    """
    iod = interocular_distance(annotated_xy, left_eye, right_eye)  # (N,)
    per_point = normalised_point_errors(pred_xy, detected_xy, iod)  # (N, K)
    divisor = per_point.shape[1] if reference_divisor is None else reference_divisor
    return per_point.sum(axis=1) / divisor


# ---------------------------------------------------------------------------------------------
# Ridge regression
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeModel:
    """A fitted linear map y = weights @ (x - x_mean) + y_mean.

    weights: (E, D); x_mean: (D,); y_mean: (E,). Without bias both means are zero.
    """

    weights: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray

    @property
    def intercept(self) -> np.ndarray:
        """(E,) the constant term b of y = weights @ x + b."""
        return self.y_mean - self.weights @ self.x_mean

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for a checkpoint or a JSON file; `from_dict` reads them back exactly (float64)."""
        return {"weights": self.weights.tolist(), "x_mean": self.x_mean.tolist(), "y_mean": self.y_mean.tolist()}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "RidgeModel":
        """The model of `to_dict`; one-line UserError naming `where` if the entries do not fit together."""
        try:
            weights, x_mean, y_mean = (np.asarray(data[k], dtype=np.float64) for k in ("weights", "x_mean", "y_mean"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: not a saved regressor ({type(exc).__name__}: {exc}); expected weights, "
                            "x_mean and y_mean") from None
        if weights.ndim != 2 or x_mean.shape != (weights.shape[1],) or y_mean.shape != (weights.shape[0],) \
                or not np.isfinite(weights).all():
            raise UserError(f"{where}: regressor of shapes {weights.shape}, {x_mean.shape}, {y_mean.shape}; expected "
                            "finite (E, D), (D,), (E,)")
        return cls(weights, x_mean, y_mean)


def _centred(x: np.ndarray, y: np.ndarray, bias: bool) -> tuple[np.ndarray, ...]:
    """(N, D), (N, E) -> centred x, centred y, x_mean (D,), y_mean (E,); no centring without bias."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected x (N, D) and y (N, E) with N >= 1, got {x.shape} and {y.shape}")
    x_mean = x.mean(axis=0) if bias else np.zeros(x.shape[1])
    y_mean = y.mean(axis=0) if bias else np.zeros(y.shape[1])
    return x - x_mean, y - y_mean, x_mean, y_mean


def ridge_penalty(gram: np.ndarray, reg: float) -> float:
    """The reference's scaled penalty reg * max(C), where max(C) is the largest entry of C.

    gram: (D, D) C = Xcᵀ Xc of the (centred, with bias) regressor inputs. This is sklearn's `alpha`.
    """
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    return float(reg * gram.max())


def fit_ridge(x: np.ndarray, y: np.ndarray, reg: float, bias: bool = True) -> RidgeModel:
    """Closed-form ridge of the reference (docs/reference.md): R = (Ycᵀ Xc)(Xcᵀ Xc + reg * max(C) * I)^-1.

    With `bias`, both sides are centred by their training means (an implicit intercept); without it
    (IMM's variant) nothing is centred and there is no intercept. A zero penalty (reg = 0, or
    constant inputs such as a single training image with bias) gives the minimum-norm least-squares
    solution, the reg -> 0 limit; for constant inputs that is weights = 0, predicting the mean.

    Args:
        x: (N, D) inputs, y: (N, E) targets, both in regressor units.
        reg: lambda >= 0, relative to the largest entry of C.
    Returns:
        RidgeModel with weights (E, D).
    """
    x_c, y_c, x_mean, y_mean = _centred(x, y, bias)
    gram = x_c.T @ x_c  # (D, D), symmetric
    alpha = ridge_penalty(gram, reg)
    if alpha > 0:
        weights_t = np.linalg.solve(gram + alpha * np.eye(gram.shape[0]), x_c.T @ y_c)  # (D, E)
    else:
        weights_t = np.linalg.lstsq(x_c, y_c, rcond=None)[0]  # (D, E) minimum-norm solution
    return RidgeModel(weights=weights_t.T, x_mean=x_mean, y_mean=y_mean)


def fit_ridge_sklearn(x: np.ndarray, y: np.ndarray, reg: float, bias: bool = True) -> RidgeModel:
    """The same fit with scikit-learn: Ridge(alpha=reg * max(C), fit_intercept=bias).

    A cross-check of `fit_ridge`: sklearn centres by the means exactly when `bias` is set, and its
    penalty alpha * ||W||² matches ours when alpha = reg * max(C); with alpha = 0 it is LinearRegression.
    Shapes as in `fit_ridge`.
    """
    from sklearn.linear_model import LinearRegression, Ridge  # heavy import, only when asked for

    x_c, _, x_mean, _ = _centred(x, y, bias)
    alpha = ridge_penalty(x_c.T @ x_c, reg)
    # a zero penalty (reg = 0, or one training image with bias): the minimum-norm least squares, as fit_ridge
    # does; Ridge(alpha=0) would warn of a singular matrix and fall back to it anyway
    ridge = Ridge(alpha=alpha, fit_intercept=bias) if alpha > 0 else LinearRegression(fit_intercept=bias)
    ridge = ridge.fit(np.asarray(x, np.float64), np.asarray(y, np.float64))
    weights = np.atleast_2d(ridge.coef_)  # (E, D)
    intercept = np.asarray(ridge.intercept_, dtype=np.float64) if bias else np.zeros(len(weights))
    return RidgeModel(weights=weights, x_mean=x_mean, y_mean=intercept + weights @ x_mean)


def predict(model: RidgeModel, x: np.ndarray) -> np.ndarray:
    """Apply a fitted map: (M, D) -> (M, E)."""
    return (np.asarray(x, dtype=np.float64) - model.x_mean) @ model.weights.T + model.y_mean


FIT_FUNCTIONS = {"closed-form": fit_ridge, "sklearn": fit_ridge_sklearn}


def regress_points(
    train_src_xy_px: np.ndarray,
    train_dst_xy_px: np.ndarray,
    test_src_xy_px: np.ndarray,
    reg: float,
    bias: bool = True,
    solver: str = "closed-form",
) -> np.ndarray:
    """Fit a linear map from one point set to another on training images; apply it to test images.

    Forward regression is detected -> annotated; backward is annotated -> detected. Points are
    flattened to (x0, y0, x1, y1, ...) in regressor units (`crop_px_to_norm`) and mapped back.

    Args:
        train_src_xy_px: (N, P, 2) source points of the training images, crop pixels.
        train_dst_xy_px: (N, Q, 2) target points of the same images.
        test_src_xy_px: (M, P, 2) source points of the test images.
        reg: ridge lambda (see `fit_ridge`); bias: fit an intercept; solver: one of SOLVERS.
    Returns:
        (M, Q, 2) predicted target points of the test images, crop pixels.
    """
    return apply_point_regressor(fit_point_regressor(train_src_xy_px, train_dst_xy_px, reg, bias, solver),
                                 test_src_xy_px)


def fit_point_regressor(src_xy_px: np.ndarray, dst_xy_px: np.ndarray, reg: float, bias: bool = True,
                        solver: str = "closed-form") -> RidgeModel:
    """The ridge map from (N, P, 2) source points to (N, Q, 2) target points, crop pixels, in regressor units."""
    n = len(dst_xy_px)
    x = crop_px_to_norm(src_xy_px).reshape(n, -1)  # (N, 2P)
    y = crop_px_to_norm(dst_xy_px).reshape(n, -1)  # (N, 2Q)
    return FIT_FUNCTIONS[solver](x, y, reg, bias)


def apply_point_regressor(model: RidgeModel, src_xy_px: np.ndarray) -> np.ndarray:
    """A `fit_point_regressor` map applied to (M, P, 2) source points -> (M, Q, 2) target points, crop pixels."""
    x = crop_px_to_norm(src_xy_px).reshape(len(src_xy_px), -1)  # (M, 2P)
    y = predict(model, x).reshape(len(src_xy_px), -1, 2)  # (M, Q, 2)
    return norm_to_crop_px(y)


# ---------------------------------------------------------------------------------------------
# Few-shot protocol
# ---------------------------------------------------------------------------------------------


def fewshot_indices(
    n_train: int, n: int | str, repeats: int, seed: int, reference: bool = False
) -> list[np.ndarray]:
    """Which training images the regressor sees in each repeat of the few-shot protocol (docs/reference.md).

    Each repeat draws exactly `n` distinct indices in [0, n_train). The draws depend only on
    (seed, n), so adding a size to the table leaves the other sizes' draws unchanged. 'all' gives one
    draw with every image (repeats would be identical).

    `reference=True` reproduces the reference's single draw permutation[0 : n + 1], i.e. n + 1
    images (docs/reference.md, bug 9), but seeded so that it is reproducible.

    Args:
        n_train: size of the training split; n: images per draw, or 'all'.
        repeats: number of draws (ignored for 'all' and in reference mode); seed: >= 0.
    Returns:
        list of (n,) int64 index arrays, sorted within each draw.
    """
    if n == "all":
        return [np.arange(n_train)]
    if isinstance(n, str) or n < 1:
        raise UserError(f"few-shot size {n!r} is not a positive integer or 'all'")
    if n > n_train:
        raise UserError(
            f"few-shot size {n} is larger than the training split ({n_train} images); "
            "drop it from --sizes or use 'all'"
        )
    if repeats < 1:
        raise UserError(f"few-shot repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng([seed, n])
    if reference:
        return [np.sort(rng.permutation(n_train)[: n + 1])]
    return [np.sort(rng.choice(n_train, size=n, replace=False)) for _ in range(repeats)]


# ---------------------------------------------------------------------------------------------
# Collapse measures: do the detected points spread over the face and ride on its parts?
# detected_xy: (N, K, 2), annotated_xy: (N, P, 2), (x, y) in the same crop pixels.
# ---------------------------------------------------------------------------------------------

DISTINCT_THRESHOLD_IOD = 0.05  # landmarks whose mean positions are closer than this are not distinct
COLLAPSED_SPREAD = 0.2  # below this spread, or with fewer than K/2 distinct landmarks, a run looks collapsed


def rms_radius(points_xy: np.ndarray) -> np.ndarray:
    """RMS distance of each set's points from their centroid: (N, K, 2) -> (N,)."""
    points_xy = np.asarray(points_xy, dtype=np.float64)
    centred = points_xy - points_xy.mean(axis=1, keepdims=True)  # (N, K, 2)
    return np.sqrt((centred**2).sum(axis=-1).mean(axis=1))


def spread(detected_xy: np.ndarray, annotated_xy: np.ndarray) -> float:
    """Median over faces of rms_radius(detected) / rms_radius(annotated).

    0 when every face's points coincide; about 1 when they cover the face as the annotations do.
    """
    return float(np.median(rms_radius(detected_xy) / rms_radius(annotated_xy)))


def closest_pair(detected_xy: np.ndarray, annotated_xy: np.ndarray) -> float:
    """Median over faces of the smallest distance between two detected points, over the IOD."""
    detected_xy = np.asarray(detected_xy, dtype=np.float64)
    gaps = np.linalg.norm(detected_xy[:, :, None] - detected_xy[:, None, :], axis=-1)  # (N, K, K)
    k = detected_xy.shape[1]
    gaps[:, np.arange(k), np.arange(k)] = np.inf
    return float(np.median(gaps.min(axis=(1, 2)) / interocular_distance(annotated_xy)))


def distinct_landmarks(detected_xy: np.ndarray, annotated_xy: np.ndarray,
                       threshold: float = DISTINCT_THRESHOLD_IOD) -> int:
    """How many landmarks' mean positions lie more than `threshold` IODs from every other's.

    Mean positions are over faces, in crop pixels, divided by the mean inter-ocular distance.
    """
    mean_xy = np.asarray(detected_xy, dtype=np.float64).mean(axis=0)  # (K, 2)
    mean_xy = mean_xy / interocular_distance(annotated_xy).mean()
    gaps = np.linalg.norm(mean_xy[:, None] - mean_xy[None, :], axis=-1)  # (K, K)
    np.fill_diagonal(gaps, np.inf)
    return int((gaps.min(axis=1) > threshold).sum())


def similarity_transforms(source_xy: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, scale, shift; no reflection) from each source set to one target.

    With points as complex numbers z (source) and w (target), centred: a = sum(conj(z) w) / sum(|z|^2),
    and the map is p -> a (p - mean z) + mean w.

    Args:
        source_xy: (N, P, 2) point sets; target_xy: (P, 2).
    Returns:
        (N, 2, 3) affine matrices [[re a, -im a, tx], [im a, re a, ty]].
    """
    source = np.asarray(source_xy, dtype=np.float64)
    target = np.asarray(target_xy, dtype=np.float64)
    z = source[..., 0] + 1j * source[..., 1]  # (N, P)
    w = target[:, 0] + 1j * target[:, 1]  # (P,)
    z_mean, w_mean = z.mean(axis=1, keepdims=True), w.mean()
    zc, wc = z - z_mean, w - w_mean
    a = (np.conj(zc) * wc).sum(axis=1) / (np.abs(zc) ** 2).sum(axis=1)  # (N,)
    shift = w_mean - a * z_mean[:, 0]  # (N,)
    return np.stack([np.stack([a.real, -a.imag, shift.real], axis=-1),
                     np.stack([a.imag, a.real, shift.imag], axis=-1)], axis=1)


def transform_point_sets(points_xy: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """(N, K, 2) points through per-set (N, 2, 3) affine maps -> (N, K, 2)."""
    return np.einsum("nij,nkj->nki", matrices[:, :, :2], points_xy) + matrices[:, None, :, 2]


def rms_wander(points_xy: np.ndarray) -> np.ndarray:
    """RMS distance of each landmark from its mean over faces: (N, K, 2) -> (K,)."""
    centred = points_xy - points_xy.mean(axis=0, keepdims=True)  # (N, K, 2)
    return np.sqrt((centred**2).sum(axis=-1).mean(axis=0))


def part_lock(detected_xy: np.ndarray, annotated_xy: np.ndarray) -> float:
    """How well points stay on face parts: median over landmarks of wander(detected) / wander(fixed).

    Each face is mapped onto the mean annotated shape by the least-squares similarity of its
    annotated points (the face frame). In that frame, a landmark's wander is its RMS distance from
    its mean over faces; it is divided by the wander of a point held fixed in the crop at that
    landmark's mean crop position. 0: the point rides on one face part exactly; 1: it stays put in
    the crop. The five annotated points of in-the-wild faces score about 0.26. Landmarks whose fixed
    point does not wander (identical poses) are left out.
    """
    detected = np.asarray(detected_xy, dtype=np.float64)
    to_face = similarity_transforms(annotated_xy, np.asarray(annotated_xy, dtype=np.float64).mean(axis=0))
    fixed = np.broadcast_to(detected.mean(axis=0), detected.shape)  # (N, K, 2): the mean crop positions
    wander = rms_wander(transform_point_sets(detected, to_face))  # (K,)
    fixed_wander = rms_wander(transform_point_sets(fixed, to_face))  # (K,)
    moving = fixed_wander > 1e-9 * (1 + np.abs(detected).max())
    return float(np.median(wander[moving] / fixed_wander[moving])) if moving.any() else float("nan")


def collapse_stats(detected_xy: np.ndarray, annotated_xy: np.ndarray) -> dict[str, float | int]:
    """{"spread", "closest_pair", "distinct", "num_points", "part_lock"} of one split (see above)."""
    return {"spread": spread(detected_xy, annotated_xy), "closest_pair": closest_pair(detected_xy, annotated_xy),
            "distinct": distinct_landmarks(detected_xy, annotated_xy), "num_points": int(np.shape(detected_xy)[1]),
            "part_lock": part_lock(detected_xy, annotated_xy)}


def collapse_warning(stats: dict) -> str | None:
    """A one-line warning when the points look collapsed (spread < 0.2) or merged (fewer than K/2 distinct)."""
    if stats["spread"] < COLLAPSED_SPREAD:
        return (f"the detected points look collapsed: spread {stats['spread']:.2f} (< {COLLAPSED_SPREAD} is a blob), "
                f"{stats['distinct']} of {stats['num_points']} landmarks distinct; the NME may come from the blob "
                "following the head pose, not from landmarks (docs/experiments.md, 'Training from scratch')")
    if stats["distinct"] < stats["num_points"] / 2:
        return (f"the detected points look merged: only {stats['distinct']} of {stats['num_points']} landmarks are "
                f"distinct (closest pair {stats['closest_pair']:.3f} IOD), though they spread over the face "
                f"(spread {stats['spread']:.2f}); several detector channels mark the same place "
                "(docs/experiments.md, 'Training from scratch')")
    return None


def format_collapse(stats: dict) -> str:
    """'spread 0.94, 10/10 distinct, closest 0.21 IOD, part lock 0.23' for logs and tables."""
    return (f"spread {stats['spread']:.2f}, {stats['distinct']}/{stats['num_points']} distinct, "
            f"closest {stats['closest_pair']:.2f} IOD, part lock {stats['part_lock']:.2f}")
