"""Synthetic faces: deterministic, CelebA-layout, and landmarks exactly where they are drawn."""

import json

import cv2
import numpy as np
import pytest

from datasets import load_records
from datasets.celeba import read_celeba_landmarks
from datasets.synthetic import MARKER_COLOURS, generate, main, render_face, sample_geometry


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), 40, seed=7)


def test_same_seed_same_bytes_other_seed_other_bytes(synthetic_root, tmp_path):
    again = generate(tmp_path / "again", 40, seed=7)
    other = generate(tmp_path / "other", 40, seed=8)
    files = sorted(p.relative_to(synthetic_root) for p in synthetic_root.rglob("*") if p.is_file())
    assert len(files) == 44  # 40 images, the landmark file, two MAFL lists, synthetic.json
    for relative in files:
        assert (again / relative).read_bytes() == (synthetic_root / relative).read_bytes()
    image = "Img/img_align_celeba/000001.jpg"
    assert (other / image).read_bytes() != (synthetic_root / image).read_bytes()


def test_layout_is_read_by_the_celeba_loader(synthetic_root):
    assert len(load_records("celeba", synthetic_root)) == 36  # all minus the 4 MAFL test names
    train = load_records("mafl-train", synthetic_root)
    test = load_records("mafl-test", synthetic_root)
    assert [r.name for r in test] == [f"{i:06d}.jpg" for i in range(37, 41)]
    assert len(train) == 36 and train[0].name == "000001.jpg"
    assert not (synthetic_root / "MAFL" / "testing.txt").read_text().endswith("\n")
    lines = (synthetic_root / "Anno" / "list_landmarks_align_celeba.txt").read_text().splitlines()
    assert lines[0] == "40" and lines[1].startswith("lefteye_x lefteye_y righteye_x")
    image = cv2.imread(str(train[0].path))
    assert image.shape == (218, 178, 3)


def test_stored_points_are_the_rendered_points(synthetic_root):
    """Each file row equals the landmarks that render_face draws for the same (seed, index)."""
    stored = read_celeba_landmarks(synthetic_root / "Anno" / "list_landmarks_align_celeba.txt")
    for index in (0, 17, 39):
        _, points = render_face(np.random.default_rng([7, index]))
        np.testing.assert_array_equal(stored[f"{index + 1:06d}.jpg"], points)


def test_markers_are_centred_exactly_on_the_points():
    """In features-only renders each marker's pixels are symmetric about its integer point."""
    for index in range(30):
        image, points = render_face(np.random.default_rng([1, index]), features_only=True)
        _, same_points = render_face(np.random.default_rng([1, index]))
        np.testing.assert_array_equal(points, same_points)
        for point, marker in zip(points, MARKER_COLOURS):
            ys, xs = np.nonzero(np.all(image == marker, axis=2))
            assert len(xs) >= 5
            np.testing.assert_allclose([xs.mean(), ys.mean()], point, atol=1e-9)


def test_pupils_are_dark_and_centred_on_the_eye_points_in_the_jpegs(synthetic_root):
    """On the written images, the darkest blob around each eye point is centred on it (< 0.75 px);
    a 2 px offset of the stored points fails this."""
    offsets = np.arange(-4, 5)
    for record in load_records("celeba", synthetic_root):
        grey = cv2.cvtColor(cv2.imread(str(record.path)), cv2.COLOR_BGR2GRAY).astype(float)
        for x, y in record.points_xy[:2].astype(int):
            assert grey[y, x] < 55, record.name
            weight = np.clip(60.0 - grey[y - 4:y + 5, x - 4:x + 5], 0, None)  # (9, 9) darkness
            centre = [(weight.sum(0) * offsets).sum(), (weight.sum(1) * offsets).sum()]
            assert np.abs(np.array(centre) / weight.sum()).max() < 0.75, record.name


def test_faces_vary_around_celeba_placement(synthetic_root):
    records = load_records("mafl-train", synthetic_root)
    points = np.stack([r.points_xy for r in records])  # (N, 5, 2)
    celeba_median = [[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]]
    assert np.abs(np.median(points, axis=0) - celeba_median).max() <= 4
    eye_spacing = points[:, 1, 0] - points[:, 0, 0]
    mouth_width = points[:, 4, 0] - points[:, 3, 0]
    nose_length = points[:, 2, 1] - points[:, 0, 1]
    nose_sideways = points[:, 2, 0] - points[:, :2, 0].mean(axis=1)  # moves with yaw
    for feature in (eye_spacing, mouth_width, nose_length, nose_sideways):
        assert feature.std() > 1.0


def test_heads_roll_in_the_wild():
    rolls = np.array([sample_geometry(np.random.default_rng([0, i])).roll_deg for i in range(2000)])
    assert 10.5 < rolls.std() < 13.0 and np.abs(rolls).max() <= 30.0
    assert (np.abs(rolls) > 20).mean() > 0.05  # a tail well beyond CelebA's alignment


def test_reuse_skips_a_finished_set_of_the_same_recipe_only(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["--out", str(out), "--num-images", "3", "--quiet", "--reuse"]) == 0
    assert json.loads((out / "synthetic.json").read_text())["num_images"] == 3
    (out / "Img" / "img_align_celeba" / "000001.jpg").unlink()
    assert main(["--out", str(out), "--num-images", "3", "--quiet", "--reuse"]) == 0
    assert "reusing 3 faces" in capsys.readouterr().out
    assert not (out / "Img" / "img_align_celeba" / "000001.jpg").exists()  # untouched
    assert main(["--out", str(out), "--num-images", "4", "--quiet", "--reuse"]) == 0  # other size: rewritten
    assert (out / "Img" / "img_align_celeba" / "000001.jpg").exists()
    assert len(load_records("celeba", out)) == 3  # 4 faces, the last one is MAFL test


def test_command_line(tmp_path, capsys):
    arguments = ["--out", str(tmp_path / "cli"), "--num-images", "3", "--seed", "1", "--quiet"]
    assert main(arguments) == 0
    assert len(load_records("celeba", tmp_path / "cli")) == 2
    assert main(["--out", str(tmp_path / "bad"), "--num-images", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --num-images=1: expected at least 2 (one train, one test)")
