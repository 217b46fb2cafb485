"""Face data sets in their original layouts, evaluation crops and two-view training pairs.

Public interface (see `datasets.build`): `EVAL_SPLITS`, `TRAIN_DATASETS`, `load_records`,
`build_eval_dataset`, `build_train_dataset`, and the `FaceRecord` they return.
"""

from datasets.build import (EVAL_SPLITS, TRAIN_DATASETS, build_eval_dataset, build_train_dataset,
                            load_records)
from datasets.records import LANDMARK_NAMES, FaceRecord, SkippedDataWarning

__all__ = ["EVAL_SPLITS", "TRAIN_DATASETS", "FaceRecord", "LANDMARK_NAMES", "SkippedDataWarning",
           "build_eval_dataset", "build_train_dataset", "load_records"]
