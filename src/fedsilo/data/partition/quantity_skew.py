"""Quantity skew: parties hold very different numbers of rows, each an IID sample.

Draw ``q ~ Dir(alpha * 1_N)`` and give party ``j`` a ``q[j]`` share of the shuffled rows,
so label distributions stay (close to) the global one while sizes vary: small ``alpha``
gives a few large parties and many small ones, large ``alpha`` near-equal sizes.
Li et al. 2022, "Federated Learning on Non-IID Data Silos: An Experimental Study" (ICDE),
Sec. 4.3 ("quantity skew").

A draw that leaves some party with fewer than ``min_partition_size`` rows is rejected and
redrawn from the same generator, so the result is still a function of the seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsilo.data.partition.base import (
    IndexArray,
    check_labels,
    counts_from_proportions,
    finalize,
    require_enough_rows,
    require_int,
    require_positive_float,
    split_by_counts,
)
from fedsilo.errors import DataError

_OWNER = "QuantitySkewPartitioner"


@dataclass(frozen=True)
class QuantitySkewPartitioner:
    """Dirichlet(``alpha``) party sizes over a shuffled dataset, labels IID within."""

    num_partitions: int
    seed: int
    alpha: float
    min_partition_size: int = 10
    max_retries: int = 100

    def __post_init__(self) -> None:
        require_int(_OWNER, "num_partitions", self.num_partitions, minimum=1)
        require_int(_OWNER, "seed", self.seed, minimum=0)
        require_positive_float(_OWNER, "alpha", self.alpha)
        require_int(_OWNER, "min_partition_size", self.min_partition_size, minimum=0)
        require_int(_OWNER, "max_retries", self.max_retries, minimum=1)

    def partition(self, labels: np.ndarray) -> list[IndexArray]:
        """Labels are used only for their length; DataError if sizes cannot meet the minimum."""
        n = check_labels(_OWNER, labels).shape[0]
        require_enough_rows(_OWNER, n, self.num_partitions, self.min_partition_size)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n)
        concentration = np.full(self.num_partitions, float(self.alpha))
        smallest = 0
        for _ in range(self.max_retries):
            counts = counts_from_proportions(rng.dirichlet(concentration), n)
            if int(counts.min()) >= self.min_partition_size:
                return finalize(split_by_counts(order, counts))
            smallest = max(smallest, int(counts.min()))
        raise DataError(
            f"{_OWNER}: after {self.max_retries} draws no split gave all {self.num_partitions} "
            f"parties at least min_partition_size={self.min_partition_size} rows "
            f"(alpha={self.alpha}, {n} rows; the best draw's smallest party had {smallest}). "
            f"alpha is too small or there are too many parties for this dataset: raise alpha "
            f"(e.g. {max(2 * float(self.alpha), 0.5):g}), use fewer parties, lower "
            f"min_partition_size, or raise max_retries."
        )
