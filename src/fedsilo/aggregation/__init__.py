"""Combining party updates (aggregators) and applying them (server optimizers).

- :mod:`fedsilo.aggregation.aggregators` — FedAvg's weighted mean (McMahan et al. 2017) and the
  Byzantine-robust coordinate-wise median / trimmed mean (Yin et al. 2018) and Krum /
  Multi-Krum (Blanchard et al. 2017), composed from config by :class:`AggregatorSpec`.
- :mod:`fedsilo.aggregation.server_optimizers` — server SGD, FedAvgM (Hsu et al. 2019) and
  FedAdagrad / FedAdam / FedYogi (Reddi et al. 2021, Alg. 2), composed from config by
  :class:`ServerOptimizerSpec`.
"""

from fedsilo.aggregation.aggregators import (
    AggregatorKind,
    AggregatorSpec,
    coordinate_median,
    krum,
    krum_select,
    trimmed_mean,
    weighted_mean,
)
from fedsilo.aggregation.server_optimizers import (
    ServerOptimizer,
    ServerOptimizerKind,
    ServerOptimizerSpec,
)

__all__ = [
    "AggregatorKind",
    "AggregatorSpec",
    "ServerOptimizer",
    "ServerOptimizerKind",
    "ServerOptimizerSpec",
    "coordinate_median",
    "krum",
    "krum_select",
    "trimmed_mean",
    "weighted_mean",
]
