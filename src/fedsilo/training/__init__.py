"""Local training and evaluation at a party, and classification metrics."""

from fedsilo.training.local import LocalTrainConfig, TrainResult, predict_proba, train_local
from fedsilo.training.metrics import EvalStats, classification_metrics

__all__ = [
    "EvalStats",
    "LocalTrainConfig",
    "TrainResult",
    "classification_metrics",
    "predict_proba",
    "train_local",
]
