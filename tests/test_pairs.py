"""Two-view pairs: points stay on their features, randomness is reproducible and worker-safe."""

import warnings

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.pairs import TwoViewDataset, make_pair, sample_view_params
from datasets.records import FaceRecord, SkippedDataWarning
from utils.landmarks import FLIP_PERMUTATION
from datasets.synthetic import render_face
from utils.errors import UserError

# Distinct RGB dot colours, one per landmark.
DOT_COLOURS_RGB = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]])


def dotted_face(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic face (RGB) with a radius-3 dot of DOT_COLOURS_RGB[k] on landmark k."""
    image_bgr, points = render_face(np.random.default_rng([99, seed]))
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    for point, dot in zip(points, DOT_COLOURS_RGB):
        cv2.circle(image, (int(point[0]), int(point[1])), 3, tuple(int(c) for c in dot), -1)
    return image, points.astype(np.float32)


def colours_near(view: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """(5, 3, 3, 3) colours of `view` in the 3x3 pixels around each rounded point.

    The dots have a radius of at least 3 * 128 / 97 - 0.5 > 3.4 view pixels, so the whole 3x3
    block is inside its dot when the point is within about 1.4 view pixels of the dot centre.
    """
    x, y = np.rint(points_xy).astype(int).T
    offsets = np.arange(-1, 2)
    return view[y[:, None, None] + offsets[None, :, None],
                x[:, None, None] + offsets[None, None, :]].astype(int)


@pytest.mark.parametrize("angle", [0.0, 15.0, 30.0])
@pytest.mark.parametrize("flip", [False, True])
def test_points_stay_on_their_dots_in_both_views(angle, flip):
    flips_seen = set()
    for seed in range(6):
        image, points = dotted_face(seed)
        pair = make_pair(image, points, np.random.default_rng(seed), angle=angle, tight=70,
                         tight_jitter=4.0, flip=flip, size=128)
        flips_seen.add(pair["flipped"])
        expected = DOT_COLOURS_RGB[list(FLIP_PERMUTATION)] if pair["flipped"] else DOT_COLOURS_RGB
        for key in ("x", "x_prime"):
            assert pair[key].shape == (128, 128, 3) and pair[key].dtype == np.uint8
            found = colours_near(pair[key], pair["points_" + key])  # (5, 3, 3, 3)
            assert np.abs(found - expected[:, None, None, :]).max() < 60, key
    assert flips_seen == ({False, True} if flip else {False})


def test_flipped_views_keep_left_labels_on_the_image_left():
    image, points = dotted_face(0)
    for seed in range(20):
        pair = make_pair(image, points, np.random.default_rng(seed), angle=0.0, tight=70,
                         tight_jitter=0.0, flip=True, size=128)
        for key in ("points_x", "points_x_prime"):
            assert pair[key][0, 0] < pair[key][1, 0] and pair[key][3, 0] < pair[key][4, 0]


def test_zero_angle_without_jitter_gives_two_identical_unrotated_views():
    image, points = dotted_face(1)
    pair = make_pair(image, points, np.random.default_rng(0), angle=0.0, tight=70,
                     tight_jitter=0.0, flip=False, size=128)
    np.testing.assert_array_equal(pair["x"], pair["x_prime"])
    np.testing.assert_array_equal(pair["points_x"], pair["points_x_prime"])


def test_view_angles_have_the_right_spread_and_are_clipped():
    rng = np.random.default_rng(0)
    angles = np.array([sample_view_params(rng, 15.0, 70, 4.0).angle for _ in range(4000)])
    assert 14.0 < angles.std() < 16.0
    wide = np.array([(v.angle, v.tight) for v in (sample_view_params(rng, 100.0, 70, 4.0) for _ in range(500))])
    assert np.abs(wide[:, 0]).max() == 40.0
    assert set(np.unique(wide[:, 1])) <= set(range(50, 91))


def write_faces(directory, count):
    """`count` synthetic face jpgs with their records."""
    records = []
    for index in range(count):
        image, points = render_face(np.random.default_rng([5, index]))
        path = directory / f"{index:03d}.jpg"
        cv2.imwrite(str(path), image)
        records.append(FaceRecord(path.name, path, points))
    return records


def make_dataset(records, **overrides):
    options = dict(image_size=64, angle=15.0, tight=70, tight_jitter=4.0, flip=True,
                   skip_bad_images=False, seed=3)
    options.update(overrides)
    return TwoViewDataset(records, **options)


def test_items_depend_only_on_seed_epoch_and_index(tmp_path):
    records = write_faces(tmp_path, 4)
    dataset = make_dataset(records)
    first = dataset[2]
    _ = dataset[1], dataset[3]
    again = dataset[2]
    assert torch.equal(first["x"], again["x"]) and torch.equal(first["points_x"], again["points_x"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["x"], first["x"])
    dataset.set_epoch(0)
    assert torch.equal(dataset[2]["x_prime"], first["x_prime"])
    other_seed = make_dataset(records, seed=4)[2]
    assert not torch.equal(other_seed["x"], first["x"])
    assert first["x"].dtype == torch.float32 and 0.0 <= first["x"].min() <= first["x"].max() <= 1.0
    assert first["index"] == 2 and first["name"] == "002.jpg"


def test_batches_do_not_depend_on_worker_count(tmp_path):
    torch.set_num_threads(1)
    dataset = make_dataset(write_faces(tmp_path, 6))
    dataset.set_epoch(2)
    in_process = list(DataLoader(dataset, batch_size=3, num_workers=0))
    workers = list(DataLoader(dataset, batch_size=3, num_workers=2))
    for one, two in zip(in_process, workers):
        for key in ("x", "x_prime", "points_x", "points_x_prime"):
            assert torch.equal(one[key], two[key]), key


def test_bad_image_raises_or_is_replaced_by_the_next(tmp_path):
    records = write_faces(tmp_path, 3)
    records[1].path.write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"001\.jpg: image does not decode"):
        make_dataset(records)[1]
    dataset = make_dataset(records, skip_bad_images=True)
    with pytest.warns(SkippedDataWarning, match=r"1 so far.*001\.jpg"):
        item = dataset[1]
    assert item["index"] == 2 and item["name"] == "002.jpg" and dataset.num_skipped == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[1]["index"] == 2  # known bad: skipped without a second warning


def test_unannotated_records_give_nan_points(tmp_path):
    records = [FaceRecord(r.name, r.path, None) for r in write_faces(tmp_path, 2)]
    item = make_dataset(records)[0]
    assert torch.isnan(item["points_x"]).all() and torch.isnan(item["points_x_prime"]).all()
    assert item["x"].shape == (3, 64, 64)


@pytest.mark.parametrize("flip", [False, True])
def test_view_map_sends_the_annotated_points_of_x_onto_those_of_x_prime(flip):
    """The map comes from the rotations and crop boxes only; the points are its exact images."""
    for seed in range(10):
        image, points = dotted_face(seed)
        pair = make_pair(image, points, np.random.default_rng(seed), angle=15.0, tight=70,
                         tight_jitter=4.0, flip=flip, size=32)
        matrix = pair["x_to_x_prime"].astype(np.float64)  # (2, 3)
        mapped = pair["points_x"] @ matrix[:, :2].T + matrix[:, 2]  # (5, 2)
        np.testing.assert_allclose(mapped, pair["points_x_prime"], atol=1e-3)


def test_view_map_of_two_unrotated_identical_views_is_the_identity():
    image, points = dotted_face(2)
    pair = make_pair(image, points, np.random.default_rng(0), angle=0.0, tight=70,
                     tight_jitter=0.0, flip=False, size=64)
    np.testing.assert_allclose(pair["x_to_x_prime"], [[1, 0, 0], [0, 1, 0]], atol=1e-6)


def test_view_map_moves_pixels_as_it_moves_points_in_unannotated_images():
    """Fixed crop box, NaN points: a bright dot drawn in the source lands where the map sends it."""
    image, _ = dotted_face(3)
    image[:] = 0
    source_dot = (90, 100)
    cv2.circle(image, source_dot, 4, (255, 255, 255), -1)
    for seed in range(5):
        pair = make_pair(image, None, np.random.default_rng(seed), angle=15.0, tight=70,
                         tight_jitter=0.0, flip=False, size=128)
        assert np.isnan(pair["points_x"]).all()
        centres = {}
        for key in ("x", "x_prime"):
            weights = pair[key][..., 0].astype(np.float64)  # (S, S)
            ys, xs = np.mgrid[:weights.shape[0], :weights.shape[1]]
            centres[key] = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        matrix = pair["x_to_x_prime"].astype(np.float64)
        mapped = matrix[:, :2] @ centres["x"] + matrix[:, 2]
        np.testing.assert_allclose(mapped, centres["x_prime"], atol=0.3)


def test_dataset_items_carry_the_view_map(tmp_path):
    records = []
    for i in range(3):
        image, points = dotted_face(i)
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append(FaceRecord(path=path, name=path.name, points_xy=points))
    dataset = TwoViewDataset(records, image_size=32, angle=15.0, tight=70, tight_jitter=4.0, flip=True,
                             skip_bad_images=False, seed=0)
    item = dataset[1]
    matrix = item["x_to_x_prime"].double()
    mapped = item["points_x"].double() @ matrix[:, :2].T + matrix[:, 2]
    assert item["x_to_x_prime"].dtype == torch.float32
    torch.testing.assert_close(mapped, item["points_x_prime"].double(), atol=1e-3, rtol=0)


def test_box_jitter_is_off_by_default_and_draws_nothing_then():
    """Without scale or shift jitter a view takes exactly the two draws it took before (quickstart unchanged)."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    view = sample_view_params(a, 15.0, 70, 4.0)
    assert (view.box_scale, view.box_shift_xy) == (1.0, (0.0, 0.0))
    b.standard_normal(2)
    assert a.standard_normal() == b.standard_normal()


def test_box_jitter_spreads_scale_and_shift_as_asked():
    rng = np.random.default_rng(0)
    views = [sample_view_params(rng, 0.0, 30, 0.0, scale_jitter=0.1, shift_jitter=0.05) for _ in range(4000)]
    log_scales = np.log([v.box_scale for v in views])
    shifts = np.array([v.box_shift_xy for v in views])
    assert 0.08 < log_scales.std() < 0.1 and np.abs(log_scales).max() <= 0.2 + 1e-9  # N(0, 1) clipped to +-2
    assert np.allclose(shifts.std(axis=0), 0.05, rtol=0.05) and abs(shifts.mean()) < 0.005


def test_jittered_views_still_map_x_onto_x_prime_and_carry_the_points():
    """The equivariance map and the crop points follow the jittered boxes (5 % scale, 5 % shift)."""
    image, points = render_face(np.random.default_rng([7, 0]))
    for seed in range(20):
        pair = make_pair(image, points, np.random.default_rng(seed), angle=15.0, tight=30, tight_jitter=4.0,
                         flip=False, size=32, scale_jitter=0.1, shift_jitter=0.05)
        mapped = pair["points_x"] @ pair["x_to_x_prime"][:, :2].T + pair["x_to_x_prime"][:, 2]
        assert np.abs(mapped - pair["points_x_prime"]).max() < 1e-3


def test_jitter_box_by_hand():
    from datasets.transforms import jitter_box

    assert jitter_box((10, 20, 50, 60), 1.5, (0.25, 0.0), (200, 200)) == (10, 10, 70, 70)
    assert jitter_box((10, 20, 50, 60), 1.0, (0.0, 0.0), (200, 200)) == (10, 20, 50, 60)
    assert jitter_box((0, 0, 40, 40), 1.0, (-0.5, 0.0), (200, 200)) == (0, 0, 20, 40)  # clamped: the part inside
