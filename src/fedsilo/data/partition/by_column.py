"""Natural partitioning: one party per distinct value of a column (site, hospital, region).

Real cross-silo data often arrives already split by an attribute such as the collecting
institution. Splitting a pooled table by that attribute reproduces the feature- and
label-distribution shift between silos that synthetic schemes only imitate (Li et al. 2022,
"Federated Learning on Non-IID Data Silos: An Experimental Study", Sec. 4 — "real-world
feature imbalance"; cf. the natural "by writer"/"by site" splits of LEAF, Caldas et al.
2018, and FLamby, Ogier du Terrail et al. 2022).

The split is deterministic, so there is no seed. Parties are ordered by value, and
:attr:`ByColumnPartitioner.names` gives each party's value as a string (its party name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fedsilo.data.partition.base import IndexArray, finalize, split_by_counts
from fedsilo.errors import ConfigError, DataError

_OWNER = "ByColumnPartitioner"


@dataclass(frozen=True, eq=False)
class ByColumnPartitioner:
    """Rows grouped by ``values`` (one entry per row); party ``i`` holds the ``i``-th value.

    ``num_partitions`` is the number of distinct values, known once ``values`` is given.
    """

    values: np.ndarray = field(repr=False)
    names: tuple[str, ...] = field(init=False)
    _codes: IndexArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = np.array(self.values, copy=True)
        if values.ndim != 1:
            raise DataError(f"{_OWNER}: values must be 1-D (one per row), got shape {values.shape}")
        if values.size == 0:
            raise DataError(f"{_OWNER}: values is empty; there are no rows to partition")
        missing = np.flatnonzero(pd.isna(values))
        if missing.size:
            raise DataError(
                f"{_OWNER}: {missing.size} row(s) have no value in the split column (first at "
                f"row {int(missing[0])}), so they belong to no party; fill or drop them first"
            )
        try:
            uniques, codes = np.unique(values, return_inverse=True)
        except TypeError as exc:
            raise DataError(
                f"{_OWNER}: the split column mixes value types that cannot be ordered "
                f"({exc}); convert it to one type (e.g. strings) first"
            ) from None
        names = tuple(str(v) for v in uniques.tolist())
        if len(set(names)) != len(names):
            raise DataError(
                f"{_OWNER}: distinct values of the split column print the same "
                f"({', '.join(names)}), so party names would clash; convert it to strings first"
            )
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_codes", codes.reshape(-1).astype(np.int64))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, column: str) -> ByColumnPartitioner:
        """Split ``frame``'s rows by ``frame[column]``."""
        if column not in frame.columns:
            raise ConfigError(
                f"{_OWNER}: column {column!r} is not in the table; columns are: "
                f"{', '.join(map(str, frame.columns))}"
            )
        return cls(values=frame[column].to_numpy())

    @property
    def num_partitions(self) -> int:
        """The number of distinct values (one party each)."""
        return len(self.names)

    def partition(self, labels: np.ndarray) -> list[IndexArray]:
        """Labels are ignored except that there must be one per row of ``values``."""
        arr = np.asarray(labels)
        if arr.ndim != 1 or arr.shape[0] != self._codes.shape[0]:
            raise DataError(
                f"{_OWNER}: got labels of shape {arr.shape} for a split column of "
                f"{self._codes.shape[0]} rows; they must describe the same rows"
            )
        order = np.argsort(self._codes, kind="stable")
        counts = np.bincount(self._codes, minlength=self.num_partitions)
        return finalize(split_by_counts(order, counts))
