"""Summing the parties' statistic arrays in the clear (secure aggregation off).

Without ``[privacy.secure_aggregation]`` the coordinator receives every party's
``(groups, statistics)`` array and adds them here (**sums: plain**). With it enabled,
:func:`fedsilo.analytics.secure.secure_collect` replaces this function: the parties send
masked encoded arrays and the coordinator learns only the sum.
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
