"""Quantile binning: every party bins its own features, and only bin codes enter a histogram.

A feature with thresholds ``t_0 < t_1 < ... < t_{k-1}`` has ``k + 1`` bins; a value ``x`` goes
to bin ``b`` = the number of thresholds strictly below it, so ``x <= t_b`` exactly when its bin
is ``<= b``. A split "bin <= b goes left" is therefore the rule ``x <= t_b`` on raw values,
which is what the feature's owner stores and later applies to unseen rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Binning:
    """Per-feature thresholds (ascending, unique)."""

    thresholds: tuple[FloatArray, ...]

    @property
    def n_features(self) -> int:
        return len(self.thresholds)

    def n_bins(self, feature: int) -> int:
        return len(self.thresholds[feature]) + 1

    def max_bins(self) -> int:
        return max((len(t) + 1 for t in self.thresholds), default=1)

    def codes(self, x: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Bin codes, shape ``(rows, features)``."""
        arr = check_features(x, "binning input")
        if arr.shape[1] != self.n_features:
            raise DataError(
                f"binning input has {arr.shape[1]} features, the bins were fit on {self.n_features}"
            )
        out = np.empty(arr.shape, dtype=np.int32)
        for j, thr in enumerate(self.thresholds):
            out[:, j] = np.searchsorted(thr, arr[:, j], side="left")
        return out


def check_features(x: npt.ArrayLike, what: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{what}: expected a non-empty (rows, features) matrix, got {arr.shape}")
    if not np.isfinite(arr).all():
        col = int(np.argwhere(~np.isfinite(arr))[0][1])
        raise DataError(
            f"{what}: feature column {col} has missing or infinite values; impute them first"
        )
    return arr


def fit_bins(x: npt.ArrayLike, n_bins: int) -> Binning:
    """Quantile thresholds: at most ``n_bins`` bins per feature, fewer for few distinct values."""
    if not 2 <= n_bins <= 256:
        raise DataError(f"n_bins={n_bins} must be between 2 and 256")
    arr = check_features(x, "binning input")
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    out: list[FloatArray] = []
    for j in range(arr.shape[1]):
        col = arr[:, j]
        distinct = np.unique(col)
        if len(distinct) <= n_bins:
            # one bin per distinct value: thresholds at the midpoints
            thr = (distinct[:-1] + distinct[1:]) / 2.0
        else:
            thr = np.unique(np.quantile(col, qs, method="linear"))
            thr = thr[thr < distinct[-1]]  # a threshold at the maximum leaves an empty bin
        out.append(np.asarray(thr, dtype=np.float64))
    return Binning(tuple(out))
