"""IID partitioning: shuffle the rows and deal them out in near-equal parts.

The homogeneous baseline every non-IID scheme is compared against (McMahan et al. 2017,
"Communication-Efficient Learning of Deep Networks from Decentralized Data", Sec. 3;
Li et al. 2022, "Federated Learning on Non-IID Data Silos", Sec. 4: "homogeneous").
Party sizes differ by at most one row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsilo.data.partition.base import (
    IndexArray,
    check_labels,
    finalize,
    require_enough_rows,
    require_int,
)

_OWNER = "IidPartitioner"


@dataclass(frozen=True)
class IidPartitioner:
    """Uniformly random, near-equal split of the rows into ``num_partitions`` parties."""

    num_partitions: int
    seed: int

    def __post_init__(self) -> None:
        require_int(_OWNER, "num_partitions", self.num_partitions, minimum=1)
        require_int(_OWNER, "seed", self.seed, minimum=0)

    def partition(self, labels: np.ndarray) -> list[IndexArray]:
        """Labels are used only for their length; every party gets at least one row."""
        n = check_labels(_OWNER, labels).shape[0]
        require_enough_rows(_OWNER, n, self.num_partitions, 1)
        order = np.random.default_rng(self.seed).permutation(n)
        return finalize(np.array_split(order, self.num_partitions))
