"""Summing the parties' statistic arrays: the one seam for secure aggregation.

Today the coordinator receives every party's ``(groups, statistics)`` array in the clear and
adds them (**sums: plain, secure aggregation not enabled**). :func:`sum_statistics` is the only
place that combines them; secure aggregation replaces this function (the parties then send
masked arrays and the coordinator learns only the sum), nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedsilo.errors import AggregationError

SUMS_NOTICE = "sums: plain (secure aggregation not enabled)"


def sum_statistics(per_party: Mapping[str, np.ndarray]) -> np.ndarray:
    """The element-wise sum of the parties' arrays, added in sorted party order."""
    if not per_party:
        raise AggregationError("no party statistics to sum")
    names = sorted(per_party)
    shape = per_party[names[0]].shape
    total = np.zeros(shape, dtype=np.float64)
    for name in names:
        arr = per_party[name]
        if arr.shape != shape:
            raise AggregationError(
                f"party '{name}' sent statistics of shape {arr.shape}, expected {shape}"
            )
        total += arr.astype(np.float64, copy=False)
    return total
