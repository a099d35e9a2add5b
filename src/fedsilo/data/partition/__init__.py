"""Simulated splits of one dataset among parties: IID, label skew, quantity skew, by column.

Each scheme is a frozen dataclass satisfying :class:`Partitioner`: ``partition(labels)``
returns one sorted int64 row-index array per party, covering every row exactly once, and
the same parameters (seed included) always give the same split. The non-IID schemes follow
Li et al. 2022, "Federated Learning on Non-IID Data Silos: An Experimental Study", Sec. 4.
"""

from __future__ import annotations

import enum

from fedsilo.data.partition.base import IndexArray, Partitioner
from fedsilo.data.partition.by_column import ByColumnPartitioner
from fedsilo.data.partition.dirichlet import DirichletPartitioner
from fedsilo.data.partition.iid import IidPartitioner
from fedsilo.data.partition.quantity_skew import QuantitySkewPartitioner


class PartitionKind(enum.Enum):
    """The partition schemes a job can name (``data.partition``)."""

    IID = "iid"
    DIRICHLET = "dirichlet"
    QUANTITY_SKEW = "quantity-skew"
    BY_COLUMN = "by-column"


__all__ = [
    "ByColumnPartitioner",
    "DirichletPartitioner",
    "IidPartitioner",
    "IndexArray",
    "PartitionKind",
    "Partitioner",
    "QuantitySkewPartitioner",
]
