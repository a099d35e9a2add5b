"""Fixed-point encoding of a party's statistics into the ring Z_{2^64}, for secure aggregation.

Every statistic of the plan has a public per-row bound: its block's sensitivity ``Δ_j``
(:mod:`fedsilo.analytics.plan`: 1 for counts, ``h`` for a centred sum, ``h^2`` for a sum of
squares, ``h_a h_b`` for a sum of products). With ``R = max_rows``, a public bound on the rows
of one group across all parties, the sum of any statistic over all parties is at most
``R Δ_j`` in magnitude. Each statistic is encoded as the two's-complement 64-bit integer

    ``round(x / step_j)``  with  ``step_j = 1`` for counts,
    ``step_j = Δ_j 2^-F`` otherwise,  ``F = 62 - ceil(log2 R)``,

so a sum over all parties is at most ``R 2^F <= 2^62`` ring units from 0 and never wraps.
Counts (row counts, non-NULL counts, histogram bins) are integers: they come out **exact**.
Every other statistic of a sum over ``n`` parties is within ``n step_j / 2 = n Δ_j 2^-(F+1)``
of the plain float sum (round to nearest, ties to even; deterministic): with the default
``R = 10^9`` (``F = 32``) and 10 parties that is ``1.2e-9 Δ_j``, against a Gaussian noise sd of
``z sqrt(m) Δ_j`` (``z`` the noise multiplier, ``m`` the plan's blocks): far below the noise.

>>> fp = FixedPoint(np.array([1.0, 0.5 * 2.0**-32]))
>>> total = fp.encode(np.array([[3.0, 0.1]])) + fp.encode(np.array([[4.0, -0.3]]))
>>> out = fp.decode(total, groups=1)
>>> bool(out[0, 0] == 7.0), bool(abs(out[0, 1] + 0.2) <= fp.error_bound(2)[1])
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsilo.analytics.plan import QueryPlan
from fedsilo.errors import AggregationError, DataError

RING_BITS = 64
COUNT_KINDS = frozenset({"count", "n", "hist", "pn"})  # integer statistics: step 1, exact
_LIMIT = 2.0**62  # |encoded| of any party's or the total's statistic stays below this


def fraction_bits(max_rows: int) -> int:
    """``F = 62 - ceil(log2 max_rows)``: the finest step at which ``max_rows`` rows cannot wrap."""
    return 62 - math.ceil(math.log2(max(max_rows, 2)))


@dataclass(frozen=True)
class FixedPoint:
    """Per-statistic steps (in plan order); ``encode`` a ``(groups, stats)`` array, ``decode``
    the ring sum back."""

    steps: np.ndarray  # (stats,) float64, 1.0 for counts

    @classmethod
    def for_plan(cls, plan: QueryPlan, max_rows: int) -> FixedPoint:
        unit = 2.0 ** -fraction_bits(max_rows)
        steps = [
            np.full(b.size, 1.0 if b.kind in COUNT_KINDS else b.sensitivity(plan.columns) * unit)
            for b in plan.blocks
        ]
        return cls(np.concatenate(steps).astype(np.float64))

    @property
    def exact(self) -> np.ndarray:
        """Which statistics are integer counts (encoded without error)."""
        return np.asarray(self.steps == 1.0)

    def error_bound(self, parties: int) -> np.ndarray:
        """Per statistic, the largest difference between the decoded and the plain float sum
        of ``parties`` parties' statistics (0 for counts)."""
        return np.where(self.exact, 0.0, parties * self.steps / 2)

    def encode(self, stats: np.ndarray, *, party: str = "") -> np.ndarray:
        """A party's ``(groups, stats)`` float64 array as a flat uint64 ring vector."""
        if stats.ndim != 2 or stats.shape[1] != self.steps.size:
            raise DataError(
                f"party '{party}': statistics of shape {stats.shape} do not fit the plan"
            )
        scaled = np.rint(stats / self.steps)
        if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= _LIMIT):
            raise DataError(
                f"party '{party}': a statistic is too large for the fixed-point ring: one group "
                "holds more rows than privacy.secure_aggregation.max_rows; raise max_rows"
            )
        return np.asarray(scaled.astype(np.int64).view(np.uint64).reshape(-1))

    def decode(self, total: np.ndarray, *, groups: int) -> np.ndarray:
        """The ring sum back to a ``(groups, stats)`` float64 array.

        Raises :class:`AggregationError` if the statistics may have wrapped around the ring
        (a decoded count is negative or beyond float64's exact integers).
        """
        signed = np.ascontiguousarray(total, dtype=np.uint64).view(np.int64)
        out = np.asarray(signed.reshape(groups, self.steps.size).astype(np.float64) * self.steps)
        counts = signed.reshape(groups, self.steps.size)[:, self.exact]
        if counts.size and (np.any(counts < 0) or np.any(counts >= 2**53)):
            raise AggregationError(
                "the securely summed counts are out of range: the ring sum is corrupt"
            )
        return out

    def check_rows(self, rows: np.ndarray, max_rows: int) -> None:
        """Refuse a decoded sum whose groups hold more than ``max_rows`` rows (it may have
        wrapped); the message does not reveal the count."""
        if np.any(rows > max_rows):
            raise AggregationError(
                "a group holds more rows across the parties than "
                f"privacy.secure_aggregation.max_rows = {max_rows}, so its sums may have wrapped "
                "around the 64-bit ring; raise max_rows and ask again"
            )
