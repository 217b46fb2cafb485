"""Collapse measures (utils/metrics.py): spread, closest pair, distinct landmarks, part lock, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from utils.metrics import (closest_pair, collapse_stats, collapse_warning, distinct_landmarks, part_lock,
                           similarity_transforms, spread, transform_point_sets)

# Eyes 40 px apart: IOD 40. RMS radius about the centroid (64, 74.4), computed by hand below.
FACE_XY_PX = np.array([[44, 52], [84, 52], [64, 74], [48, 96], [80, 96]], dtype=np.float64)  # (5, 2)


def rotation_about(angle_deg: float, centre: tuple[float, float], scale: float = 1.0) -> np.ndarray:
    c, s = scale * math.cos(math.radians(angle_deg)), scale * math.sin(math.radians(angle_deg))
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])


def posed_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5, 2) faces: FACE_XY_PX rotated +-25 deg, scaled and shifted; and their (n, 2, 3) poses."""
    rng = np.random.default_rng(seed)
    poses = np.stack([rotation_about(rng.uniform(-25, 25), (64, 64), rng.uniform(0.8, 1.2)) for _ in range(n)])
    poses[:, :, 2] += rng.normal(scale=5.0, size=(n, 2))
    return transform_point_sets(np.broadcast_to(FACE_XY_PX, (n, 5, 2)), poses), poses


def test_spread_is_zero_for_coincident_points_and_the_radius_ratio_otherwise():
    annotated = FACE_XY_PX[None]  # (1, 5, 2)
    assert spread(np.full((1, 10, 2), 64.0), annotated) == 0.0
    # Annotated RMS radius: centroid (64, 74); squared distances 884, 884, 0, 740, 740 -> mean 649.6.
    # Detected: four points at (64 +- 10, 74 +- 10): radius sqrt(200).
    detected = np.array([[[54, 64], [74, 64], [54, 84], [74, 84]]], dtype=np.float64)
    assert spread(detected, annotated) == pytest.approx(math.sqrt(200 / 649.6))


def test_closest_pair_is_the_smallest_gap_over_the_interocular_distance():
    annotated = FACE_XY_PX[None]
    detected = np.array([[[0, 0], [3, 4], [30, 0]]], dtype=np.float64)  # gaps 5, 30, 26.9
    assert closest_pair(detected, annotated) == pytest.approx(5 / 40)
    assert closest_pair(np.zeros((1, 3, 2)), annotated) == 0.0


def test_distinct_landmarks_counts_points_more_than_threshold_iods_from_every_other():
    annotated = np.stack([FACE_XY_PX, FACE_XY_PX])  # IOD 40: 0.05 IOD = 2 px
    detected = np.array([[[0, 0], [1, 0], [10, 0], [20, 0]]] * 2, dtype=np.float64)  # 0 and 1 are 1 px apart
    assert distinct_landmarks(detected, annotated) == 2
    assert distinct_landmarks(np.zeros((2, 10, 2)), annotated) == 0
    assert distinct_landmarks(detected, annotated, threshold=0.01) == 4


def test_similarity_transforms_recover_known_poses():
    faces, poses = posed_faces(6, seed=0)
    back = similarity_transforms(faces, FACE_XY_PX)  # (6, 2, 3): each posed face onto the template
    np.testing.assert_allclose(transform_point_sets(faces, back), np.broadcast_to(FACE_XY_PX, faces.shape), atol=1e-9)


def test_part_lock_is_zero_on_face_parts_one_for_fixed_points_and_low_for_annotations():
    faces, poses = posed_faces(200, seed=1)
    # Points that ride on face parts: template positions through each face's pose.
    template_points = np.array([[50, 60], [78, 60], [64, 85], [64, 100]], dtype=np.float64)
    riding = transform_point_sets(np.broadcast_to(template_points, (200, 4, 2)), poses)
    assert part_lock(riding, faces) == pytest.approx(0.0, abs=1e-9)
    fixed = np.broadcast_to(np.array([[40.0, 40.0], [90.0, 60.0]]), (200, 2, 2))
    assert part_lock(fixed, faces) == pytest.approx(1.0)
    # Annotations with some shape noise lock well but not perfectly.
    noisy = faces + np.random.default_rng(2).normal(scale=1.0, size=faces.shape)
    assert 0.0 < part_lock(noisy, noisy) < 0.4


def test_collapse_stats_and_warning():
    faces, poses = posed_faces(50, seed=3)
    blob = np.broadcast_to(np.array([64.0, 70.0]), (50, 10, 2)) + np.random.default_rng(0).normal(
        scale=0.1, size=(50, 10, 2))
    stats = collapse_stats(blob, faces)
    assert stats["num_points"] == 10 and stats["distinct"] == 0 and stats["spread"] < 0.05
    assert "collapsed" in collapse_warning(stats)
    healthy = collapse_stats(faces, faces)
    assert healthy["spread"] == pytest.approx(1.0) and healthy["distinct"] == 5
    assert collapse_warning(healthy) is None
    pairs = np.concatenate((faces, faces), axis=1)  # (50, 10, 2): each part marked twice
    merged = collapse_stats(pairs, faces)
    assert merged["distinct"] == 0 and merged["spread"] > 0.9
    assert "merged: only 0 of 10" in collapse_warning(merged) and "blob" not in collapse_warning(merged)


@pytest.mark.parametrize("k", [30, 50])
def test_distinct_count_at_many_landmarks(k):
    """A K-point grid over the face counts all K distinct; two merged copies count none."""
    faces, poses = posed_faces(20, seed=4)
    side = int(math.ceil(math.sqrt(k)))
    grid = np.stack(np.meshgrid(np.linspace(40, 88, side), np.linspace(45, 100, side)), -1).reshape(-1, 2)[:k]
    detected = transform_point_sets(np.broadcast_to(grid, (20, k, 2)), poses)
    assert distinct_landmarks(detected, faces) == k
    doubled = np.concatenate([detected[:, : k // 2], detected[:, : k // 2]], axis=1)
    assert distinct_landmarks(doubled, faces) == 0
