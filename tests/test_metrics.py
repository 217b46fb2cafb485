"""Tests of utils/metrics.py: hand-computed errors, ridge against known answers and scikit-learn."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from utils import metrics
from utils.errors import UserError
from utils.metrics import (
    backward_error,
    crop_px_to_norm,
    fewshot_indices,
    fit_ridge,
    fit_ridge_sklearn,
    nme,
    norm_to_crop_px,
    predict,
    regress_points,
)

FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2)


def random_faces(n: int, seed: int) -> np.ndarray:
    """(n, 5, 2) annotated faces jittered around a mean face, 128-px crop pixels."""
    return FACE_XY_PX + np.random.default_rng(seed).normal(scale=4.0, size=(n, 5, 2))


# --- errors ------------------------------------------------------------------------------------


def test_nme_of_hand_computed_three_point_example():
    gt = np.array([[[0, 0], [10, 0], [5, 5]]], dtype=float)  # eye distance 10
    pred = np.array([[[3, 4], [10, 0], [5, -1]]], dtype=float)  # errors 5, 0, 6
    assert nme(pred, gt) == pytest.approx([(5 + 0 + 6) / 3 / 10])


def test_nme_uses_the_given_eye_indices_and_is_per_image():
    gt = np.array([[[0, 0], [5, 5], [0, 20]], [[0, 0], [1, 0], [0, 2]]], dtype=float)
    pred = gt + np.array([3.0, 4.0])  # every point off by 5
    # image 0: eyes are points 0 and 2 -> distance 20; image 1: distance 2.
    assert nme(pred, gt, left_eye=0, right_eye=2) == pytest.approx([5 / 20, 5 / 2])


def test_docstring_examples_hold():
    assert doctest.testmod(metrics).failed == 0


def test_backward_error_divides_by_k_not_by_ten():
    annotated = np.array([[[0, 0], [10, 0], [5, 5], [2, 8], [8, 8]]], dtype=float)  # IOD = 10
    detected = np.array([[[1, 1], [2, 2], [3, 3]]], dtype=float)  # K = 3
    pred = detected + np.array([[[3, 4], [0, 0], [6, 8]]])  # errors 5, 0, 10 -> sum 15
    assert backward_error(pred, detected, annotated) == pytest.approx([15 / 3 / 10])
    assert backward_error(pred, detected, annotated, reference_divisor=10) == pytest.approx([15 / 10 / 10])


def test_regressor_units_follow_the_reference_and_round_trip():
    # 128-px -> /4 -> 32-px heatmap units -> /32 - 0.5: the crop centre 64 maps to 0, 0 to -0.5.
    assert crop_px_to_norm(np.array([64.0, 0.0])) == pytest.approx([0.0, -0.5])
    points = np.random.default_rng(0).uniform(0, 128, size=(4, 3, 2))
    assert norm_to_crop_px(crop_px_to_norm(points)) == pytest.approx(points)


# --- ridge -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_ridge_recovers_a_known_linear_map(bias):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6))
    true_w = rng.normal(size=(4, 6))
    true_b = rng.normal(size=4) if bias else np.zeros(4)
    model = fit_ridge(x, x @ true_w.T + true_b, reg=1e-12, bias=bias)
    assert model.weights == pytest.approx(true_w, abs=1e-8)
    assert model.intercept == pytest.approx(true_b, abs=1e-8)


@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_equals_sklearn_ridge_with_alpha_reg_times_max_gram(bias):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 8)) + 3.0  # off-centre, so the centring matters
    y = x @ rng.normal(size=(8, 5)) + rng.normal(size=(40, 5))
    reg = 0.05  # large enough that a wrong penalty scale would show
    x_c = x - x.mean(axis=0) if bias else x
    alpha = reg * (x_c.T @ x_c).max()  # the largest entry of C, computed independently here
    sk = Ridge(alpha=alpha, fit_intercept=bias).fit(x, y)
    model = fit_ridge(x, y, reg, bias=bias)
    x_test = rng.normal(size=(7, 8))
    assert model.weights == pytest.approx(sk.coef_, rel=1e-9, abs=1e-12)
    assert predict(model, x_test) == pytest.approx(sk.predict(x_test), rel=1e-9, abs=1e-12)
    assert predict(fit_ridge_sklearn(x, y, reg, bias), x_test) == pytest.approx(sk.predict(x_test))


def test_scaled_penalty_makes_the_fit_invariant_to_input_scale():
    # reg acts relative to max(C), so scaling the inputs must not change the predictions;
    # an unscaled penalty reg * I would shrink the small-scale fit far more.
    rng = np.random.default_rng(3)
    x, y, x_test = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.normal(size=(5, 4))
    small = predict(fit_ridge(x, y, reg=0.1), x_test)
    large = predict(fit_ridge(1000 * x, y, reg=0.1), 1000 * x_test)
    assert small == pytest.approx(large, rel=1e-8)
    assert not np.allclose(predict(fit_ridge(x, y, reg=0.1), x_test), predict(fit_ridge(x, y, reg=0), x_test))


def test_single_training_image_with_bias_predicts_its_target():
    x, y = np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 5.0]])
    model = fit_ridge(x, y, reg=1e-4)
    assert predict(model, np.array([[7.0, 8.0, 9.0]])) == pytest.approx(y)


def test_forward_regression_of_an_exact_affine_map_gives_zero_nme():
    annotated = random_faces(200, seed=4)  # (N, 5, 2)
    mixing = np.random.default_rng(5).normal(size=(20, 10))  # K = 10 detected from 5 annotated
    detected = (annotated.reshape(200, 10) @ mixing.T + 7.0).reshape(200, 10, 2)  # exact affine map
    pred = regress_points(detected[:150], annotated[:150], detected[150:], reg=1e-12)  # (50, 5, 2)
    assert nme(pred, annotated[150:]).max() < 1e-6
    # With the default lambda the penalty biases the fit measurably; the tiny lambda is what makes it exact.
    pred_default = regress_points(detected[:150], annotated[:150], detected[150:], reg=1e-4)
    assert nme(pred_default, annotated[150:]).mean() > 1e-6


def test_backward_regression_of_an_exact_linear_map_with_three_points():
    annotated = random_faces(60, seed=6)
    mixing = np.random.default_rng(7).normal(size=(6, 10)) / 5  # K = 3
    detected = (annotated.reshape(60, 10) @ mixing.T).reshape(60, 3, 2)
    pred = regress_points(annotated[:40], detected[:40], annotated[40:], reg=1e-12)  # (20, 3, 2)
    assert pred.shape == (20, 3, 2)
    assert backward_error(pred, detected[40:], annotated[40:]).max() < 1e-6


# --- few-shot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 100])
def test_fewshot_draws_exactly_n_distinct_images_reproducibly(n):
    draws = fewshot_indices(1000, n, repeats=10, seed=0)
    assert len(draws) == 10
    for idx in draws:
        assert len(idx) == len(np.unique(idx)) == n
        assert idx.min() >= 0 and idx.max() < 1000
    again = fewshot_indices(1000, n, repeats=10, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(draws, again))
    other = fewshot_indices(1000, n, repeats=10, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(draws, other))
    assert len({tuple(idx) for idx in draws}) > 1  # repeats are different draws


def test_fewshot_reference_mode_uses_n_plus_one_images_once():
    draws = fewshot_indices(1000, 5, repeats=10, seed=0, reference=True)
    assert len(draws) == 1 and len(np.unique(draws[0])) == 6


def test_fewshot_all_is_every_image_once():
    (idx,) = fewshot_indices(30, "all", repeats=10, seed=0)
    assert np.array_equal(idx, np.arange(30))


def test_fewshot_size_larger_than_train_split_is_a_user_error():
    message = r"few-shot size 5000 is larger than the training split \(100 images\)"
    with pytest.raises(UserError, match=message):
        fewshot_indices(100, 5000, repeats=10, seed=0)
