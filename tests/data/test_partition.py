"""Partitioners: shared conformance, label/quantity skew levels, validation and errors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedsilo.data.partition import (
    ByColumnPartitioner,
    DirichletPartitioner,
    IidPartitioner,
    Partitioner,
    PartitionKind,
    QuantitySkewPartitioner,
)
from fedsilo.errors import ConfigError, DataError

NUM_CLASSES = 10
# 10 classes x 1,000 rows, shuffled so class order carries no information.
LABELS = np.random.default_rng(123).permutation(np.repeat(np.arange(NUM_CLASSES), 1000))


def check_partitioner(
    p: Partitioner, labels: np.ndarray, other_seed: Partitioner | None = None
) -> list[np.ndarray]:
    """Assert the Partitioner contract; return the partition."""
    assert isinstance(p, Partitioner)
    parts = p.partition(labels)
    assert isinstance(parts, list)
    assert len(parts) == p.num_partitions
    for part in parts:
        assert isinstance(part, np.ndarray)
        assert part.dtype == np.int64
        assert part.ndim == 1
        assert np.all(np.diff(part) > 0), "indices must be sorted ascending without repeats"
    everything = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(everything, np.arange(len(labels)))  # every row exactly once
    # Deterministic: same object twice, and a fresh object with the same parameters.
    for again in (p.partition(labels), dataclasses.replace(p).partition(labels)):
        assert len(again) == len(parts)
        for a, b in zip(parts, again, strict=True):
            np.testing.assert_array_equal(a, b)
    if other_seed is not None:
        different = other_seed.partition(labels)
        assert any(
            a.shape != b.shape or not np.array_equal(a, b)
            for a, b in zip(parts, different, strict=True)
        ), "another seed should give another partition"
    return parts


def label_tv(parts: list[np.ndarray], labels: np.ndarray = LABELS) -> float:
    """Mean total-variation distance of parties' label distributions from the global one."""
    k = int(labels.max()) + 1
    global_dist = np.bincount(labels, minlength=k) / labels.size
    return float(
        np.mean(
            [
                0.5 * np.abs(np.bincount(labels[p], minlength=k) / p.size - global_dist).sum()
                for p in parts
                if p.size
            ]
        )
    )


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize(
    ("make", "labels"),
    [
        (lambda s: IidPartitioner(num_partitions=7, seed=s), LABELS),
        (lambda s: IidPartitioner(num_partitions=1, seed=s), LABELS[:50]),
        (lambda s: DirichletPartitioner(num_partitions=20, seed=s, alpha=0.5), LABELS),
        (lambda s: DirichletPartitioner(num_partitions=3, seed=s, alpha=5.0), LABELS[:300]),
        (lambda s: QuantitySkewPartitioner(num_partitions=10, seed=s, alpha=1.0), LABELS),
        (lambda s: QuantitySkewPartitioner(num_partitions=4, seed=s, alpha=10.0), LABELS[:200]),
    ],
    ids=["iid-7", "iid-1", "dirichlet-20", "dirichlet-3", "quantity-10", "quantity-4"],
)
def test_seeded_partitioners_conform(
    make: Callable[[int], Partitioner], labels: np.ndarray
) -> None:
    p = make(0)
    other = make(1) if p.num_partitions > 1 else None
    check_partitioner(p, labels, other)


def test_by_column_conforms() -> None:
    values = np.random.default_rng(0).choice(np.array(["north", "south", "east"]), size=500)
    check_partitioner(ByColumnPartitioner(values=values), LABELS[:500])


def test_partitioners_accept_string_labels() -> None:
    labels = np.array(["cat", "dog", "bird"] * 100)
    for p in (
        IidPartitioner(num_partitions=4, seed=0),
        DirichletPartitioner(num_partitions=4, seed=0, alpha=1.0),
        QuantitySkewPartitioner(num_partitions=4, seed=0, alpha=2.0),
    ):
        check_partitioner(p, labels)


def test_partition_kind_values() -> None:
    assert {k.value for k in PartitionKind} == {"iid", "dirichlet", "quantity-skew", "by-column"}
    assert PartitionKind("quantity-skew") is PartitionKind.QUANTITY_SKEW


def test_partitioners_are_frozen() -> None:
    p = DirichletPartitioner(num_partitions=3, seed=0, alpha=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.alpha = 2.0


# --------------------------------------------------------------------------- IID


def test_iid_sizes_differ_by_at_most_one() -> None:
    parts = IidPartitioner(num_partitions=7, seed=3).partition(LABELS)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == LABELS.size


def test_iid_is_close_to_global_label_distribution() -> None:
    parts = IidPartitioner(num_partitions=10, seed=0).partition(LABELS)
    assert label_tv(parts) < 0.05


def test_iid_more_parties_than_rows_is_a_data_error() -> None:
    with pytest.raises(DataError, match="fewer parties"):
        IidPartitioner(num_partitions=11, seed=0).partition(np.zeros(10, dtype=np.int64))


# --------------------------------------------------------------------------- Dirichlet


def test_dirichlet_small_alpha_skews_labels_much_more_than_large_alpha() -> None:
    def tv(alpha: float, seed: int) -> float:
        p = DirichletPartitioner(num_partitions=20, seed=seed, alpha=alpha, min_partition_size=1)
        return label_tv(p.partition(LABELS))

    skewed = np.mean([tv(0.1, s) for s in range(3)])
    mild = np.mean([tv(100.0, s) for s in range(3)])
    assert skewed > 0.5  # most of each party's label mass sits on a few classes
    assert mild < 0.08
    assert skewed > 5 * mild


def test_dirichlet_huge_alpha_is_near_iid() -> None:
    parts = DirichletPartitioner(num_partitions=10, seed=0, alpha=1000.0).partition(LABELS)
    assert label_tv(parts) < 0.03
    sizes = np.array([p.size for p in parts])
    assert np.all(np.abs(sizes - LABELS.size / 10) < 0.1 * LABELS.size / 10)


def test_dirichlet_small_alpha_concentrates_each_class() -> None:
    parts = DirichletPartitioner(num_partitions=20, seed=0, alpha=0.1, min_partition_size=1)
    # For a typical class, the largest party holds a big share of it.
    by_party = np.stack(
        [np.bincount(LABELS[p], minlength=NUM_CLASSES) for p in parts.partition(LABELS)]
    )
    top_share = by_party.max(axis=0) / by_party.sum(axis=0)
    assert np.median(top_share) > 0.3  # IID would give about 1/20


def test_dirichlet_enforces_min_partition_size() -> None:
    labels = LABELS[:2000]
    p = DirichletPartitioner(num_partitions=10, seed=5, alpha=0.3, min_partition_size=60)
    parts = check_partitioner(p, labels)
    assert min(part.size for part in parts) >= 60


def test_dirichlet_impossible_setting_raises_helpful_data_error() -> None:
    labels = np.repeat(np.arange(2), 250)  # 500 rows, 2 classes
    p = DirichletPartitioner(
        num_partitions=40, seed=0, alpha=0.01, min_partition_size=10, max_retries=20
    )
    with pytest.raises(DataError) as info:
        p.partition(labels)
    msg = str(info.value)
    assert "alpha" in msg and "too small" in msg and "too many parties" in msg
    assert "min_partition_size=10" in msg and "max_retries" in msg and "20" in msg


def test_dirichlet_not_enough_rows_fails_fast() -> None:
    p = DirichletPartitioner(num_partitions=10, seed=0, alpha=1.0, min_partition_size=10)
    with pytest.raises(DataError, match="needs 100 rows"):
        p.partition(LABELS[:99])


def test_dirichlet_single_class_still_partitions() -> None:
    labels = np.zeros(400, dtype=np.int64)
    check_partitioner(DirichletPartitioner(num_partitions=4, seed=0, alpha=5.0), labels)


def test_dirichlet_rejects_nan_labels() -> None:
    labels = np.array([0.0, 1.0, math.nan] * 50)
    with pytest.raises(DataError, match="NaN"):
        DirichletPartitioner(num_partitions=2, seed=0, alpha=1.0).partition(labels)


# --------------------------------------------------------------------------- quantity skew


def test_quantity_skew_small_alpha_varies_sizes_more() -> None:
    def size_cv(alpha: float) -> float:
        cvs = []
        for seed in range(5):
            p = QuantitySkewPartitioner(
                num_partitions=20, seed=seed, alpha=alpha, min_partition_size=1
            )
            sizes = np.array([part.size for part in p.partition(LABELS)])
            cvs.append(sizes.std() / sizes.mean())
        return float(np.mean(cvs))

    small, large = size_cv(0.5), size_cv(100.0)
    assert small > 0.8
    assert large < 0.2
    assert small > 5 * large


def test_quantity_skew_keeps_labels_iid_within_parties() -> None:
    p = QuantitySkewPartitioner(num_partitions=5, seed=1, alpha=1.0, min_partition_size=1000)
    assert label_tv(p.partition(LABELS)) < 0.06


def test_quantity_skew_enforces_min_size_and_explains_failure() -> None:
    p = QuantitySkewPartitioner(num_partitions=8, seed=2, alpha=1.0, min_partition_size=300)
    parts = check_partitioner(p, LABELS)
    assert min(part.size for part in parts) >= 300
    hopeless = QuantitySkewPartitioner(
        num_partitions=50, seed=0, alpha=0.05, min_partition_size=10, max_retries=10
    )
    with pytest.raises(DataError, match="alpha is too small or there are too many parties"):
        hopeless.partition(LABELS[:1000])


# --------------------------------------------------------------------------- by column


def test_by_column_groups_equal_values_in_value_order() -> None:
    values = np.array(["b", "a", "c", "a", "b", "a"])
    p = ByColumnPartitioner(values=values)
    assert p.num_partitions == 3
    assert p.names == ("a", "b", "c")
    parts = check_partitioner(p, np.zeros(6, dtype=np.int64))
    np.testing.assert_array_equal(parts[0], [1, 3, 5])
    np.testing.assert_array_equal(parts[1], [0, 4])
    np.testing.assert_array_equal(parts[2], [2])
    for name, part in zip(p.names, parts, strict=True):
        assert set(values[part]) == {name}


def test_by_column_numeric_values_sort_numerically_and_name_as_strings() -> None:
    p = ByColumnPartitioner(values=np.array([10, 2, 10, 33]))
    assert p.names == ("2", "10", "33")
    assert [part.tolist() for part in p.partition(np.arange(4))] == [[1], [0, 2], [3]]


def test_by_column_ignores_labels_but_checks_their_length() -> None:
    p = ByColumnPartitioner(values=np.array([1, 2, 1, 2]))
    a = p.partition(np.array([0, 0, 0, 0]))
    b = p.partition(np.array(["x", "y", "z", "w"]))
    assert [x.tolist() for x in a] == [y.tolist() for y in b]
    with pytest.raises(DataError, match="same rows"):
        p.partition(np.zeros(3))


def test_by_column_from_frame_and_copy_safety() -> None:
    frame = pd.DataFrame({"site": ["h2", "h1", "h2"], "x": [1.0, 2.0, 3.0]})
    p = ByColumnPartitioner.from_frame(frame, "site")
    assert p.names == ("h1", "h2")
    frame.loc[0, "site"] = "h9"  # later edits to the source do not leak in
    assert p.names == ("h1", "h2")
    assert not p.values.flags.writeable
    with pytest.raises(ConfigError, match="columns are: site, x"):
        ByColumnPartitioner.from_frame(frame, "hospital")


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array(["a", None, "b"], dtype=object), "no value in the split column"),
        (np.array([1.0, np.nan]), "no value in the split column"),
        (np.array([], dtype=object), "empty"),
        (np.zeros((2, 2)), "1-D"),
        (np.array([1, "1"], dtype=object), "split column"),
    ],
    ids=["none", "nan", "empty", "2d", "mixed"],
)
def test_by_column_rejects_unusable_values(values: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ByColumnPartitioner(values=values)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("cls", [DirichletPartitioner, QuantitySkewPartitioner])
@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"num_partitions": 0}, "num_partitions"),
        ({"num_partitions": 2.5}, "num_partitions"),
        ({"num_partitions": True}, "num_partitions"),
        ({"seed": -1}, "seed"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"alpha": math.inf}, "alpha"),
        ({"min_partition_size": -1}, "min_partition_size"),
        ({"max_retries": 0}, "max_retries"),
    ],
)
def test_skew_partitioners_validate_parameters(
    cls: type[Partitioner], override: dict[str, Any], param: str
) -> None:
    kwargs = {"num_partitions": 3, "seed": 0, "alpha": 1.0} | override
    with pytest.raises(ConfigError, match=param) as info:
        cls(**kwargs)
    assert ">" in str(info.value)  # states the valid range


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"num_partitions": 0, "seed": 0}, "num_partitions"),
        ({"num_partitions": 2, "seed": -5}, "seed"),
    ],
)
def test_iid_validates_parameters(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError, match=f"{param} must be an integer >= "):
        IidPartitioner(**kwargs)


def test_numpy_integer_parameters_are_accepted() -> None:
    p = IidPartitioner(num_partitions=np.int64(3), seed=np.uint32(7))
    check_partitioner(p, LABELS[:30])


def test_large_derived_seeds_are_accepted() -> None:
    check_partitioner(IidPartitioner(num_partitions=3, seed=2**63 - 1), LABELS[:30])


@pytest.mark.parametrize(
    "p",
    [
        IidPartitioner(num_partitions=2, seed=0),
        DirichletPartitioner(num_partitions=2, seed=0, alpha=1.0, min_partition_size=0),
        QuantitySkewPartitioner(num_partitions=2, seed=0, alpha=1.0, min_partition_size=0),
    ],
    ids=["iid", "dirichlet", "quantity"],
)
@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.zeros((4, 2)), "1-D"), (np.array([], dtype=np.int64), "no rows")],
    ids=["2d", "empty"],
)
def test_bad_labels_are_data_errors(p: Partitioner, labels: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        p.partition(labels)
