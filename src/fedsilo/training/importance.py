"""Permutation importance of a trained model on a labelled table (Breiman 2001, §10).

For each original column (a category's one-hot columns move together) the rows of that
column are shuffled, the model scores the table again, and the importance is the mean drop
in accuracy and mean rise in log loss over ``repeats`` shuffles. The shuffles come from a
generator seeded by the caller (determinism, not protection: same seed, same numbers).
Pure: no I/O, the model is a ``predict_proba`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.data.preprocess import PreprocessPlan
from fedsilo.data.tabular import ColumnType
from fedsilo.training.metrics import classification_metrics

Predict = Callable[[npt.NDArray[np.float32]], np.ndarray]


def column_groups(plan: PreprocessPlan) -> dict[str, list[int]]:
    """Feature indices per original column of the plan: a number's one index, or a
    category's one-hot indices (in the plan's encoding order)."""
    groups: dict[str, list[int]] = {}
    j = 0
    for col in plan.schema.columns:
        width = len(plan.categories[col.name]) if col.type is ColumnType.CATEGORY else 1
        groups[col.name] = list(range(j, j + width))
        j += width
    return groups


def permutation_importance(
    predict: Predict,
    x: npt.NDArray[np.float32],
    y: np.ndarray,
    groups: dict[str, list[int]],
    *,
    rng: np.random.Generator,
    repeats: int = 3,
) -> dict[str, Any]:
    """``{"features", "total", "by_feature": {column: {accuracy_drop, loss_increase}}}``."""
    base = classification_metrics(y, predict(x))
    by_feature: dict[str, dict[str, float]] = {}
    for name, cols in groups.items():
        drops, rises = [], []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, cols] = x[rng.permutation(len(x))][:, cols]
            m = classification_metrics(y, predict(shuffled))
            drops.append(base["accuracy"] - m["accuracy"])
            rises.append(m["loss"] - base["loss"])
        by_feature[name] = {
            "accuracy_drop": float(np.mean(drops)),
            "loss_increase": float(np.mean(rises)),
        }
    total = {
        key: float(sum(v[key] for v in by_feature.values()))
        for key in ("accuracy_drop", "loss_increase")
    }
    return {"features": len(by_feature), "total": total, "by_feature": by_feature}
