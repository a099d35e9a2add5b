"""Label-distribution skew: each class is spread over the parties by Dirichlet proportions.

For every class ``k`` draw ``p_k ~ Dir(alpha * 1_N)`` over the ``N`` parties and hand party
``j`` a ``p_k[j]`` share of class ``k``'s (shuffled) rows. Small ``alpha`` concentrates each
class on a few parties (strong label skew); large ``alpha`` approaches an IID split.
Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", Sec. 3; Yurochkin et al. 2019, "Bayesian Nonparametric
Federated Learning of Neural Networks" (ICML), Sec. 5; Li et al. 2022, "Federated Learning
on Non-IID Data Silos: An Experimental Study", Sec. 4.1 ("distribution-based label
imbalance").

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

_OWNER = "DirichletPartitioner"


@dataclass(frozen=True)
class DirichletPartitioner:
    """Per-class Dirichlet(``alpha``) split of the rows over ``num_partitions`` parties."""

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
        """Split the rows; DataError if no draw within ``max_retries`` meets the minimum size."""
        arr = check_labels(_OWNER, labels)
        require_enough_rows(_OWNER, arr.shape[0], self.num_partitions, self.min_partition_size)
        _, codes = np.unique(arr, return_inverse=True)
        codes = codes.reshape(-1)
        by_class = np.argsort(codes, kind="stable")
        class_rows = split_by_counts(by_class, np.bincount(codes))
        concentration = np.full(self.num_partitions, float(self.alpha))
        rng = np.random.default_rng(self.seed)
        smallest = 0
        for _ in range(self.max_retries):
            parts: list[list[np.ndarray]] = [[] for _ in range(self.num_partitions)]
            for rows in class_rows:
                shares = rng.dirichlet(concentration)
                counts = counts_from_proportions(shares, rows.shape[0])
                chunks = split_by_counts(rng.permutation(rows), counts)
                for party, chunk in zip(parts, chunks, strict=True):
                    party.append(chunk)
            sizes = [sum(c.shape[0] for c in party) for party in parts]
            if min(sizes) >= self.min_partition_size:
                return finalize([np.concatenate(party) for party in parts])
            smallest = max(smallest, min(sizes))
        raise DataError(
            f"{_OWNER}: after {self.max_retries} draws no split gave all {self.num_partitions} "
            f"parties at least min_partition_size={self.min_partition_size} rows "
            f"(alpha={self.alpha}, {arr.shape[0]} rows, {len(class_rows)} classes; the best "
            f"draw's smallest party had {smallest}). alpha is too small or there are too many "
            f"parties for this dataset: raise alpha (e.g. {max(2 * float(self.alpha), 0.5):g}), "
            f"use fewer parties, lower min_partition_size, or raise max_retries."
        )
