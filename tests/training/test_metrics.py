from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from fedsilo.training import EvalStats, classification_metrics


def random_predictions(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, proba


def test_binary_metrics_match_scikit_learn() -> None:
    y, p = random_predictions(500, 2, 0)
    m = classification_metrics(y, p)
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert m["loss"] == pytest.approx(log_loss(y, p))


def test_multiclass_metrics_are_macro_averages() -> None:
    y, p = random_predictions(600, 4, 1)
    m = classification_metrics(y, p)
    pred = p.argmax(1)
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert "auc" not in m


def test_merged_party_stats_equal_pooled_metrics() -> None:
    y, p = random_predictions(900, 2, 2)
    parts = np.array_split(np.arange(900), 3)
    merged = EvalStats.from_predictions(y[parts[0]], p[parts[0]])
    for idx in parts[1:]:
        merged = merged.merge(EvalStats.from_predictions(y[idx], p[idx]))
    pooled = classification_metrics(y, p)
    fed = merged.metrics()
    for key in ("loss", "accuracy", "precision", "recall", "f1"):
        assert fed[key] == pytest.approx(pooled[key], rel=1e-12)
    assert fed["auc"] == pytest.approx(pooled["auc"], abs=2e-3)  # binning error


def test_eval_stats_round_trip_through_json() -> None:
    y, p = random_predictions(50, 2, 3)
    stats = EvalStats.from_predictions(y, p)
    again = EvalStats.from_json(stats.to_json())
    assert again.metrics() == stats.metrics()


def test_binary_auc_equals_scikit_learn_with_and_without_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from fedsilo.training.metrics import binary_auc

    rng = np.random.default_rng(3)
    for trial in range(50):
        n = int(rng.integers(2, 60))
        labels = rng.integers(0, 2, size=n)
        labels[:2] = [0, 1]  # both classes
        scores = rng.random(n)
        if trial % 2:
            scores = np.round(scores, 1)  # many ties
        assert binary_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert binary_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
