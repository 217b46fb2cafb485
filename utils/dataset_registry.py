"""The data sets this repository reads, and their splits: the one place that lists them.

Everything else derives from these tables: the readers of `datasets.build` (one per layout), the config
choices of `data.dataset` and `validation.*_split`, the default validation splits of a training run,
`extract_data.py --splits`, `eval_regressor.py --dataset` and the detection files it looks for.
`tests/test_dataset_registry.py` ties them together.

- A *layout* is a data set as distributed (CelebA with its MAFL lists, aflw_release-2, MTFL, or a plain
  image folder); `LAYOUT_SPLITS` lists the evaluation splits each one's reader gives.
- A *training set* (`data.dataset`) names the split whose images are trained on, and the splits the
  in-training validation fits its regressor on and measures on ("" for the tail of the fit split).
- A *benchmark* (`eval_regressor.py --dataset`) is a train split for the regressor and the test splits
  to score, the first one present in a detections folder.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT_SPLITS: dict[str, tuple[str, ...]] = {
    "celeba": ("mafl-train", "mafl-test", "celeba"),
    "aflw": ("aflw-train", "aflw-test"),
    "mtfl": ("mtfl-train", "mtfl-val", "mtfl-test"),
    "folder": ("folder",),
}
EVAL_SPLITS: tuple[str, ...] = tuple(split for splits in LAYOUT_SPLITS.values() for split in splits)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # what a plain folder's images may end in (any case)


@dataclass(frozen=True)
class TrainingSet:
    """A `data.dataset` value: the split trained on and the default validation splits."""

    split: str  # whose records are trained on
    fit_split: str = ""  # the validation regressor is fitted here ("": no validation)
    eval_split: str = ""  # and measured here ("": the tail of fit_split, disjoint from the fitted part)


TRAINING_SETS: dict[str, TrainingSet] = {
    "celeba": TrainingSet("celeba", "mafl-train"),
    "synthetic": TrainingSet("celeba", "mafl-train"),  # python -m datasets.synthetic writes the CelebA layout
    "mafl-train": TrainingSet("mafl-train", "mafl-train"),
    "aflw": TrainingSet("aflw-train", "aflw-train"),
    "mtfl": TrainingSet("mtfl-train", "mtfl-train", "mtfl-val"),  # mtfl-val stays held out
    "folder": TrainingSet("folder"),
}


@dataclass(frozen=True)
class Benchmark:
    """An `eval_regressor.py --dataset` value: `<train_split>.npz` fits the regressor, the first of
    `<test_splits>.npz` found beside it is scored."""

    train_split: str
    test_splits: tuple[str, ...]


BENCHMARKS: dict[str, Benchmark] = {
    "mafl": Benchmark("mafl-train", ("mafl-test",)),
    "aflw": Benchmark("aflw-train", ("aflw-test",)),
    "mtfl": Benchmark("mtfl-train", ("mtfl-test", "mtfl-val")),
}


SPLIT_LAYOUTS: dict[str, str] = {split: layout for layout, splits in LAYOUT_SPLITS.items() for split in splits}
