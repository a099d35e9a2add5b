"""What every partitioner is, and the checks and splitting steps they share.

A partitioner turns a label vector into one row-index array per party. It is a pure
function of its parameters (including its seed) and the labels: it holds no dataset and
calling it twice gives the same partition. Every row lands in exactly one party and each
party's indices are sorted ascending, so parties keep the dataset's row order.

The label-skew and quantity-skew schemes follow the non-IID taxonomy of Li et al. 2022,
"Federated Learning on Non-IID Data Silos: An Experimental Study" (ICDE), Sec. 4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ConfigError, DataError

IndexArray = npt.NDArray[np.int64]


@runtime_checkable
class Partitioner(Protocol):
    """Splits a dataset's rows among ``num_partitions`` parties."""

    @property
    def num_partitions(self) -> int:
        """How many index arrays :meth:`partition` returns."""
        ...

    def partition(self, labels: np.ndarray) -> list[IndexArray]:
        """One sorted int64 row-index array per party; together they cover every row once."""
        ...


def require_int(owner: str, name: str, value: object, *, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")


def require_positive_float(owner: str, name: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is a finite real number > 0."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) > 0
    )
    if not ok:
        raise ConfigError(
            f"{owner}: {name} must be a finite number > 0 (e.g. 0.1 for strong skew, "
            f"100 for near-IID), got {value!r}"
        )


def check_labels(owner: str, labels: np.ndarray) -> np.ndarray:
    """The labels as a non-empty 1-D array without missing values."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(
            f"{owner}: labels must be a 1-D array (one label per row), got shape {arr.shape}"
        )
    if arr.size == 0:
        raise DataError(f"{owner}: there are no rows to partition (labels is empty)")
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise DataError(f"{owner}: labels contain NaN or infinite values; drop or fix those rows")
    return arr


def require_enough_rows(owner: str, num_rows: int, num_partitions: int, min_size: int) -> None:
    """Raise DataError when ``num_partitions`` parties of ``min_size`` rows cannot fit."""
    needed = num_partitions * min_size
    if num_rows < needed:
        raise DataError(
            f"{owner}: {num_rows} rows cannot give {num_partitions} parties at least "
            f"{min_size} row(s) each (that needs {needed} rows); use fewer parties"
            + (" or a smaller min_partition_size" if min_size > 1 else "")
        )


def counts_from_proportions(proportions: np.ndarray, total: int) -> IndexArray:
    """Integer counts summing exactly to ``total``, following ``proportions`` (sum 1).

    Cuts the rows at ``floor(cumsum(proportions) * total)``, so each count is within one
    of its exact share and no row is lost to rounding.
    """
    cuts = np.floor(np.cumsum(proportions) * total).astype(np.int64)
    cuts = np.clip(cuts, 0, total)
    cuts[-1] = total
    counts: IndexArray = np.diff(cuts, prepend=np.int64(0))
    return counts


def split_by_counts(rows: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Consecutive chunks of ``rows`` with the given sizes (sizes sum to ``len(rows)``)."""
    return np.split(rows, np.cumsum(counts)[:-1])


def finalize(parts: Sequence[np.ndarray]) -> list[IndexArray]:
    """Each party's indices as a fresh, ascending int64 array."""
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
