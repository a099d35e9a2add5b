"""Property tests: every partitioner conserves rows for arbitrary labels and sizes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo.data.partition import (
    ByColumnPartitioner,
    DirichletPartitioner,
    IidPartitioner,
    QuantitySkewPartitioner,
)
from fedsilo.errors import DataError


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    labels = np.array(
        draw(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=300)),
        dtype=np.int64,
    )
    parties = draw(st.integers(min_value=1, max_value=min(len(labels), 12)))
    seed = draw(st.integers(min_value=0, max_value=2**63 - 1))
    return labels, parties, seed


def assert_conserved(parts: list[np.ndarray], n: int, expected_parts: int) -> None:
    assert len(parts) == expected_parts
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


COMMON = settings(max_examples=60, deadline=None)


@COMMON
@given(problems())
def test_iid_conserves_rows(problem: tuple[np.ndarray, int, int]) -> None:
    labels, parties, seed = problem
    parts = IidPartitioner(num_partitions=parties, seed=seed).partition(labels)
    assert_conserved(parts, len(labels), parties)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1


@COMMON
@given(problems(), st.floats(min_value=0.01, max_value=1e4))
def test_dirichlet_conserves_rows(problem: tuple[np.ndarray, int, int], alpha: float) -> None:
    labels, parties, seed = problem
    p = DirichletPartitioner(num_partitions=parties, seed=seed, alpha=alpha, min_partition_size=0)
    assert_conserved(p.partition(labels), len(labels), parties)


@COMMON
@given(problems(), st.floats(min_value=0.01, max_value=1e4))
def test_quantity_skew_conserves_rows(problem: tuple[np.ndarray, int, int], alpha: float) -> None:
    labels, parties, seed = problem
    p = QuantitySkewPartitioner(
        num_partitions=parties, seed=seed, alpha=alpha, min_partition_size=0
    )
    assert_conserved(p.partition(labels), len(labels), parties)


@COMMON
@given(problems(), st.integers(min_value=0, max_value=5))
def test_min_size_is_met_whenever_a_split_is_returned(
    problem: tuple[np.ndarray, int, int], min_size: int
) -> None:
    labels, parties, seed = problem
    for cls in (DirichletPartitioner, QuantitySkewPartitioner):
        p = cls(num_partitions=parties, seed=seed, alpha=2.0, min_partition_size=min_size)
        try:
            parts = p.partition(labels)
        except DataError:  # the documented outcome when no draw meets the minimum
            continue
        assert_conserved(parts, len(labels), parties)
        assert min(part.size for part in parts) >= min_size


@COMMON
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=200))
def test_by_column_conserves_rows_and_groups_values(values: list[str]) -> None:
    arr = np.array(values)
    p = ByColumnPartitioner(values=arr)
    parts = p.partition(np.zeros(len(arr), dtype=np.int64))
    assert p.num_partitions == len(set(values))
    assert list(p.names) == sorted(set(values))
    assert_conserved(parts, len(arr), p.num_partitions)
    for name, part in zip(p.names, parts, strict=True):
        assert set(arr[part].tolist()) == {name}
        assert part.size == values.count(name)
