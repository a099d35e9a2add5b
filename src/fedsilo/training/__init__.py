"""Local training and evaluation at a party, and classification metrics."""

from fedsilo.training.local import (
    LocalTrainConfig,
    Trainer,
    TrainResult,
    predict_proba,
    train_local,
)
from fedsilo.training.metrics import EvalStats, classification_metrics

__all__ = [
    "EvalStats",
    "LocalTrainConfig",
    "TrainResult",
    "Trainer",
    "classification_metrics",
    "predict_proba",
    "train_local",
]
