"""Binary-classification metrics of vertical models: AUC, KS, accuracy, F1, log loss."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score, log_loss, roc_auc_score, roc_curve


def binary_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """Metrics of probabilities ``scores`` against 0/1 ``labels`` (threshold 0.5)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    out = {"examples": float(y.size), "accuracy": float(np.mean((p >= 0.5) == (y == 1)))}
    out["f1"] = float(f1_score(y, (p >= 0.5).astype(np.int64), zero_division=0.0))
    if np.unique(y).size == 2:
        fpr, tpr, _ = roc_curve(y, p)
        out["auc"] = float(roc_auc_score(y, p))
        out["ks"] = float(np.max(tpr - fpr))
        out["loss"] = float(log_loss(y, p, labels=[0, 1]))  # "loss" is the log loss everywhere
    return out
