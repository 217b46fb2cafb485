"""The in-training validation: a ridge regressor fitted on detections of one fixed subset, its NME on
another, and the collapse measures of the detected points (the same protocol as eval_regressor.py, on
fewer faces)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from datasets import build_eval_dataset
from utils.checkpoint import RunState
from utils.dataset_registry import TRAINING_SETS
from utils.extraction import extract_points
from utils.metrics import collapse_stats, nme, regress_points
from utils.plot_run import write_curves_quietly
from utils.run_config import RunConfig
from utils.training.run_log import RunLog, report_validation, validation_record


def validation_sets(cfg: RunConfig) -> tuple[Subset, Subset] | None:
    """Fixed fit and evaluation subsets for the in-training NME (disjoint, deterministic), or None when the
    run validates nothing (validation off, or a data set without a default fit split)."""
    v = cfg.validation
    defaults = TRAINING_SETS[cfg.data.dataset]
    fit_split, eval_split = v.fit_split or defaults.fit_split, v.eval_split or defaults.eval_split
    if not v.enabled or not fit_split:
        return None
    root = v.root or cfg.data.root

    def make(split: str):
        return build_eval_dataset(split, root, image_size=cfg.data.image_size, tight=cfg.data.tight,
                                  skip_bad_images=cfg.data.skip_bad_images)

    fit = make(fit_split)
    if not eval_split or eval_split == fit_split:  # hold out the tail of the fit split
        num_eval = min(v.num_eval, len(fit) // 2)
        return Subset(fit, range(min(v.num_fit, len(fit) - num_eval))), Subset(fit, range(len(fit) - num_eval, len(fit)))
    evaluation = make(eval_split)
    return Subset(fit, range(min(v.num_fit, len(fit)))), Subset(evaluation, range(min(v.num_eval, len(evaluation))))


def validate(model: nn.Module, sets: tuple[Subset, Subset], cfg: RunConfig, device: torch.device
             ) -> tuple[float, dict]:
    """(Forward NME in percent of a ridge regressor fitted on the fit subset, on the evaluation subset;
    the collapse measures of the evaluation subset, `utils.metrics.collapse_stats`)."""
    fit, evaluation = (extract_points(model, s, batch_size=cfg.validation.batch_size, device=device, progress=False)
                       for s in sets)
    predicted = regress_points(fit["detected"], fit["annotated"], evaluation["detected"], cfg.validation.reg)
    return (100.0 * float(nme(predicted, evaluation["annotated"]).mean()),
            collapse_stats(evaluation["detected"], evaluation["annotated"]))


def validate_and_report(model: nn.Module, sets: tuple[Subset, Subset], cfg: RunConfig, device: torch.device,
                        state: RunState, log: RunLog, progress: Any, seconds: dict[str, float]
                        ) -> tuple[bool, dict[str, str]]:
    """Validate, update `state.best_val_nme`, write the log record, curves.png and the line (`progress`: the
    tqdm bar); `seconds` ({"train", "val"}) gets the validation's time. Returns (whether the NME improved on the
    best, the progress bar's postfix)."""
    start = time.perf_counter()
    val_nme, stats = validate(model, sets, cfg, device)
    seconds["val"] += time.perf_counter() - start
    improved = val_nme < state.best_val_nme
    state.best_val_nme = min(state.best_val_nme, val_nme)
    log.write(validation_record(state.step, val_nme, stats, state.best_val_nme,
                                seconds["val"] / max(seconds["train"] + seconds["val"], 1e-9)))
    if log.path is not None:
        write_curves_quietly(log.path.parent)  # RUN/curves.png, redrawn at each validation
    return improved, report_validation(progress, state.step, val_nme, state.best_val_nme, stats)
