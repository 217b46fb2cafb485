"""Face data sets in their original layouts, evaluation crops and two-view training pairs.

Public interface (see `datasets.build`): `load_records`, `build_eval_dataset`, `build_train_dataset`,
and the `FaceRecord` they return. Which data sets and splits exist is `utils.dataset_registry`'s.
"""

from datasets.build import build_eval_dataset, build_train_dataset, build_training_pairs, load_records
from datasets.records import FaceRecord, SkippedDataWarning, SmallImageWarning

__all__ = ["FaceRecord", "SkippedDataWarning", "SmallImageWarning", "build_eval_dataset", "build_train_dataset",
           "load_records"]
