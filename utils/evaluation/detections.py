"""The detections files: one split's detected and annotated points, as written by extract_data.py and
read by eval_regressor.py (`save_detections` defines the format), and the checks that a training and a
test file form a pair that can be compared.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.dataset_registry import BENCHMARKS
from utils.errors import UserError
from utils.files import atomic_write
from utils.landmarks import NUM_ANNOTATED
from utils.metrics import interocular_distance

MAX_PREVIEW = 32  # at most this many preview faces are stored and drawn
# Extraction settings that must agree between a training and a test file: (key, what it is).
PAIR_SETTINGS = (("tight", "crop margin"), ("image_size", "crop size"), ("bn_mode", "BatchNorm mode"),
                 ("checkpoint_sha256", "checkpoint content hash"))
REQUIRED_KEYS = ("detected", "annotated", "names", "split", "checkpoint", "settings")
_SPLIT_RE = re.compile(r"^([a-z0-9_]+)-(train|val|test)$")


@dataclass(frozen=True, eq=False)
class Detections:
    """One split's detected and annotated points; see `save_detections` for the file format.

    detected_xy_px: (N, K, 2) float32; annotated_xy_px: (N, 5, 2) float32, both (x, y) crop pixels at
    the 128-px scale, pixel-centre convention. names: (N,) str. preview_images: (M, S, S, 3) uint8 RGB
    crops of the first M images, or None.
    """

    path: str
    detected_xy_px: np.ndarray
    annotated_xy_px: np.ndarray
    names: np.ndarray
    split: str
    checkpoint: str
    settings: dict
    preview_images: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def k(self) -> int:
        return self.detected_xy_px.shape[1]

    @property
    def is_annotated(self) -> bool:
        """False for a split without annotations (every annotated point NaN), e.g. 'folder'."""
        return not np.isnan(self.annotated_xy_px).all()


def _first_bad(where: str, what: str, bad: np.ndarray, names: np.ndarray, fix: str) -> None:
    """Raise a UserError naming how many images (bad: (N,) bool) have a problem, and the first one."""
    if bad.any():
        first = names[int(np.argmax(bad))]
        raise UserError(f"{where}: {what} in {int(bad.sum())} of {len(bad)} images (first: {first}); {fix}")


def _checked(
    where: str,
    detected: np.ndarray,
    annotated: np.ndarray,
    names: np.ndarray,
    split: str,
    checkpoint: str,
    settings: dict,
    preview_images: np.ndarray | None,
) -> Detections:
    """Validate the arrays of one split and bundle them; every problem is a UserError naming `where`."""
    if detected.ndim != 3 or detected.shape[2] != 2 or detected.shape[1] < 1 or detected.dtype.kind != "f":
        raise UserError(f"{where}: 'detected' is {detected.dtype} {detected.shape}; expected float (N, K, 2)")
    n = len(detected)
    if n == 0:
        raise UserError(f"{where}: the file holds no images; expected a non-empty split")
    if annotated.shape != (n, NUM_ANNOTATED, 2) or annotated.dtype.kind != "f":
        raise UserError(
            f"{where}: 'annotated' is {annotated.dtype} {annotated.shape}; expected float (N={n}, 5, 2)"
        )
    if names.shape != (n,) or names.dtype.kind != "U":
        raise UserError(f"{where}: 'names' is {names.dtype} {names.shape}; expected str ({n},)")
    fix = "re-run extract_data.py, or check the checkpoint and annotations"
    _first_bad(where, "non-finite detected points", ~np.isfinite(detected).all(axis=(1, 2)), names, fix)
    if not np.isnan(annotated).all():  # all NaN: an unannotated split (e.g. 'folder'), for detect-style use
        _first_bad(where, "non-finite annotated points", ~np.isfinite(annotated).all(axis=(1, 2)), names, fix)
        _first_bad(where, "coinciding annotated eyes", interocular_distance(annotated) <= 0, names, fix)
    if not split:
        raise UserError(f"{where}: empty 'split'; expected a name such as 'mafl-train'")
    if preview_images is not None:
        m = len(preview_images)
        if preview_images.ndim != 4 or preview_images.shape[3] != 3 or preview_images.dtype != np.uint8:
            raise UserError(
                f"{where}: 'preview_images' is {preview_images.dtype} {preview_images.shape}; "
                "expected uint8 (M, S, S, 3) RGB"
            )
        if not 1 <= m <= min(n, MAX_PREVIEW):
            raise UserError(f"{where}: {m} preview images; expected 1 to {min(n, MAX_PREVIEW)}")
    return Detections(where, detected, annotated, names, split, checkpoint, settings, preview_images)


def parse_split(split: str, where: str) -> tuple[str, str]:
    """'mafl-train' -> ('mafl', 'train'); the part is train, val or test. Case-insensitive."""
    match = _SPLIT_RE.match(split.lower())
    if match is None:
        raise UserError(f"{where}: split {split!r} is not '<dataset>-train|val|test' (e.g. 'mafl-train')")
    return match.group(1), match.group(2)


def save_detections(
    path: str | Path,
    *,
    detected_xy_px: np.ndarray,
    annotated_xy_px: np.ndarray,
    names: list[str] | np.ndarray,
    split: str,
    checkpoint: str,
    settings: dict,
    preview_images: np.ndarray | None = None,
) -> Path:
    """Validate one split's points and write them atomically as an .npz (temp file, fsync, os.replace).

    Args:
        path: output file, conventionally `<dir>/<dataset>-<part>.npz` (e.g. mafl-train.npz).
        detected_xy_px: (N, K, 2) detected (x, y) in crop pixels at the 128-px scale, pixel centres.
        annotated_xy_px: (N, 5, 2) annotated (x, y) in the same pixels: left eye, right eye, nose,
            left mouth corner, right mouth corner; all NaN for a split without annotations ('folder').
        names: N image names.
        split: the split's name; eval_regressor needs '<dataset>-<part>' with part train, val or test
            (e.g. 'mafl-train', 'aflw-test'); other names (e.g. 'celeba') are stored as they are.
        checkpoint: identity of the detector (e.g. 'path@sha256-prefix').
        settings: extraction settings (JSON-serialisable), stored as a JSON string.
        preview_images: optional (M, S, S, 3) uint8 RGB crops of the first M <= 32 images; an empty
            array (M = 0) is the same as None.
    Returns:
        the path written. Raises UserError if the arrays are malformed or contain NaN.
    """
    path = Path(path)
    preview = None if preview_images is None or len(preview_images) == 0 else np.asarray(preview_images)
    det = _checked(
        str(path),
        np.asarray(detected_xy_px, dtype=np.float32),
        np.asarray(annotated_xy_px, dtype=np.float32),
        np.asarray(names, dtype=str),
        split,
        checkpoint,
        settings,
        preview,
    )
    arrays = {
        "detected": det.detected_xy_px,
        "annotated": det.annotated_xy_px,
        "names": det.names,
        "split": np.asarray(split),
        "checkpoint": np.asarray(checkpoint),
        "settings": np.asarray(json.dumps(settings, sort_keys=True)),
    }
    if preview is not None:
        arrays["preview_images"] = preview
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _scalar_str(where: str, arrays: dict, key: str) -> str:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise UserError(f"{where}: '{key}' is {value.dtype} {value.shape}; expected a string scalar")
    return str(value)


def load_detections(path: str | Path) -> Detections:
    """Read and validate one split written by `save_detections`; any problem is a one-line UserError."""
    where = str(path)
    if not Path(path).is_file():
        raise UserError(f"{where}: file not found; expected a detections .npz written by extract_data.py")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{where}: not an .npz (zip) archive; expected the file written by extract_data.py")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated, corrupt, object arrays
        raise UserError(f"{where}: unreadable .npz ({exc}); re-run extract_data.py") from None
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise UserError(f"{where}: missing keys {missing}; expected {list(REQUIRED_KEYS)}")
    try:
        settings = json.loads(_scalar_str(where, arrays, "settings"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: 'settings' is not valid JSON ({exc})") from None
    return _checked(
        where,
        arrays["detected"],
        arrays["annotated"],
        arrays["names"],
        _scalar_str(where, arrays, "split"),
        _scalar_str(where, arrays, "checkpoint"),
        settings,
        arrays.get("preview_images"),
    )


def check_pair(train: Detections, test: Detections) -> str:
    """Check that the two files form a train/test pair of one dataset and detector, with no image in both;
    return the dataset."""
    for det in (train, test):
        if not det.is_annotated:
            raise UserError(f"{det.path}: split {det.split!r} has no annotated points; the regressor needs "
                            "annotated train and test splits (e.g. mafl-train and mafl-test)")
    train_set, train_part = parse_split(train.split, train.path)
    test_set, test_part = parse_split(test.split, test.path)
    if train_part != "train":
        raise UserError(
            f"{train.path}: split is {train.split!r}; --train needs a training split (e.g. mafl-train.npz)"
        )
    if test_part == "train":
        raise UserError(f"{test.path}: split is {test.split!r}; --test needs a test or val split")
    if train_set != test_set:
        raise UserError(
            f"{test.path}: dataset {test_set!r} differs from the training file's {train_set!r} "
            f"({train.path}); pass two splits of one dataset"
        )
    if train.k != test.k:
        raise UserError(
            f"{test.path}: K={test.k} detected points but the training file has K={train.k} "
            f"({train.path}); extract both splits with the same checkpoint"
        )
    check_same_settings(train, test)
    check_disjoint(train, test)
    return train_set


def check_disjoint(train: Detections, test: Detections) -> None:
    """Refuse a test file holding images of the training file (by image name): a regressor scored on faces
    it was fitted on gives a flattering NME."""
    shared = np.isin(test.names, train.names)  # (M,) bool
    if shared.any():
        first = test.names[int(np.argmax(shared))]
        raise UserError(f"{test.path}: {int(shared.sum())} of its {test.n} images overlap the training file "
                        f"{train.path} (first: {first}); the regressor must be scored on faces it was not fitted "
                        "on: pass disjoint splits (e.g. mafl-train and mafl-test)")


def check_same_settings(train: Detections, test: Detections) -> None:
    """Refuse a pair extracted with different `PAIR_SETTINGS`: their NME would mean nothing.

    A file written before a setting was stored lacks it: that gives a warning, not a refusal.
    """
    lacking = []
    for key, what in PAIR_SETTINGS:
        if key not in train.settings or key not in test.settings:
            lacking.append(key)
        elif train.settings[key] != test.settings[key]:
            raise UserError(
                f"{test.path}: {what} ({key}) is {test.settings[key]!r} but {train.settings[key]!r} in the "
                f"training file {train.path}; extract both splits from one checkpoint with the same settings"
            )
    if lacking:
        print(f"warning: {train.path} and {test.path}: cannot check that both splits used the same "
              f"{', '.join(lacking)}: not stored in both (files from an older extract_data.py)", file=sys.stderr)


@dataclass(frozen=True, eq=False)
class Comparison:
    """A `--compare LABEL=DIR` row: another detector's train/test detections of the same dataset."""

    label: str
    folder: Path
    train: Detections
    test: Detections


def load_comparisons(compare: tuple[tuple[str, Path], ...], dataset: str, test: Detections) -> list[Comparison]:
    """Load and check each --compare folder's <dataset> pair (found as with --dir); K may differ from ours.

    Test faces other than ours give a warning, not an error: the rows are then not on the same faces.
    """
    comparisons = []
    for label, folder in compare:
        train_path, test_path = dir_inputs(folder, dataset)
        c_train, c_test = load_detections(train_path), load_detections(test_path)
        c_dataset = check_pair(c_train, c_test)
        if c_dataset != dataset:
            raise UserError(
                f"{c_train.path}: --compare {label!r} holds dataset {c_dataset!r}; expected ours, {dataset!r}"
            )
        if not np.array_equal(c_test.names, test.names):
            print(f"warning: --compare {label!r}: its test faces ({c_test.path}, {c_test.n}) differ from ours "
                  f"({test.path}, {test.n}); its NME is not on the same faces", file=sys.stderr)
        comparisons.append(Comparison(label, folder, c_train, c_test))
    return comparisons


def dir_inputs(folder: Path, dataset: str) -> tuple[Path, Path]:
    """(train npz, test npz) of benchmark `dataset` in `folder`: `<train split>.npz` and the first of its
    `<test split>.npz` files that exists (the last one named when none does), e.g. mtfl-test, else mtfl-val."""
    benchmark = BENCHMARKS[dataset]
    tests = [folder / f"{split}.npz" for split in benchmark.test_splits]
    return folder / f"{benchmark.train_split}.npz", next((t for t in tests if t.is_file()), tests[-1])
