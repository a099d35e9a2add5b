"""Hand-computed cases for each aggregator, outlier resistance, and Krum's selection rule."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedsilo.aggregation import (
    coordinate_median,
    krum,
    krum_select,
    trimmed_mean,
    weighted_mean,
)
from fedsilo.errors import AggregationError

# Five parties x three parameters; row 4 is a wild outlier.
FIVE_WITH_OUTLIER = np.array(
    [
        [1.0, 10.0, -3.0],
        [2.0, 20.0, -1.0],
        [3.0, 30.0, 0.0],
        [9.0, 40.0, 2.0],
        [100.0, -500.0, 50.0],
    ]
)
UNIT_WEIGHTS_5 = np.ones(5)

# Five parties x two parameters for Krum. Squared distances, nearest n - f - 2 = 2 (f = 1):
#   row 0 (1,2): to row 1 = 1, to row 2 = 1                       -> score 2
#   row 1 (2,2): to row 0 = 1, to row 2 = 1 + 1 = 2                -> score 3
#   row 2 (1,3): to row 0 = 1, to row 1 = 2                        -> score 3
#   row 3 (6,7): to row 1 = 16 + 25 = 41, to row 2 = 25 + 16 = 41  -> score 82
#   row 4 (51,52): thousands                                        -> largest
KRUM_CASE = np.array([[1.0, 2.0], [2.0, 2.0], [1.0, 3.0], [6.0, 7.0], [51.0, 52.0]])


# --------------------------------------------------------------------------- weighted mean


def test_weighted_mean_weights_each_party_by_its_example_count() -> None:
    updates = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    # (1*1 + 1*3 + 2*5) / 4 = 14/4 = 3.5 ; (1*2 + 1*4 + 2*6) / 4 = 18/4 = 4.5
    result = weighted_mean(updates, np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(result, [3.5, 4.5])
    assert result.dtype == np.float64


def test_weighted_mean_ignores_parties_with_zero_weight() -> None:
    updates = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_allclose(weighted_mean(updates, np.array([0, 1, 1])), [4.0, 5.0])


def test_weighted_mean_accepts_integer_inputs() -> None:
    result = weighted_mean(np.array([[1, 2], [3, 4]]), np.array([3, 1]))
    # (3*1 + 1*3) / 4 = 1.5 ; (3*2 + 1*4) / 4 = 2.5
    np.testing.assert_allclose(result, [1.5, 2.5])
    assert result.dtype == np.float64


finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    updates=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.integers(1, 5)),
        elements=finite_floats,
    )
)
def test_weighted_mean_with_equal_weights_is_the_plain_mean(updates: np.ndarray) -> None:
    weights = np.full(updates.shape[0], 7.0)
    np.testing.assert_allclose(
        weighted_mean(updates, weights), np.mean(updates, axis=0), rtol=1e-9, atol=1e-6
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_parties=st.integers(1, 8), n_params=st.integers(1, 5))
def test_weighted_mean_is_invariant_to_the_order_of_parties(
    data: st.DataObject, n_parties: int, n_params: int
) -> None:
    updates = data.draw(hnp.arrays(np.float64, (n_parties, n_params), elements=finite_floats))
    weights = data.draw(
        hnp.arrays(np.float64, (n_parties,), elements=st.integers(0, 10_000).map(float))
    )
    if weights.sum() == 0:
        weights[0] = 1.0
    order = np.array(data.draw(st.permutations(range(n_parties))))
    np.testing.assert_allclose(
        weighted_mean(updates[order], weights[order]),
        weighted_mean(updates, weights),
        rtol=1e-9,
        atol=1e-6,
    )


# --------------------------------------------------------------------------- median


def test_coordinate_median_takes_the_middle_value_of_each_coordinate() -> None:
    # sorted columns: (1,2,3,9,100) -> 3 ; (-500,10,20,30,40) -> 20 ; (-3,-1,0,2,50) -> 0
    result = coordinate_median(FIVE_WITH_OUTLIER, UNIT_WEIGHTS_5)
    np.testing.assert_allclose(result, [3.0, 20.0, 0.0])


def test_coordinate_median_of_an_even_count_averages_the_two_middle_values() -> None:
    updates = np.array([[1.0, 5.0], [2.0, 6.0], [4.0, 7.0], [100.0, -100.0]])
    # sorted columns: (1,2,4,100) -> (2+4)/2 = 3 ; (-100,5,6,7) -> (5+6)/2 = 5.5
    np.testing.assert_allclose(coordinate_median(updates, np.ones(4)), [3.0, 5.5])


def test_coordinate_median_ignores_weights() -> None:
    heavy_outlier = np.array([1.0, 1.0, 1.0, 1.0, 1e9])
    np.testing.assert_allclose(
        coordinate_median(FIVE_WITH_OUTLIER, heavy_outlier), [3.0, 20.0, 0.0]
    )


# --------------------------------------------------------------------------- trimmed mean


def test_trimmed_mean_drops_the_extremes_of_each_coordinate_separately() -> None:
    # trim_ratio 0.2 of 5 parties drops 1 value at each end of every column:
    # (2,3,9) -> 14/3 ; (10,20,30) -> 20 ; (-1,0,2) -> 1/3
    result = trimmed_mean(FIVE_WITH_OUTLIER, UNIT_WEIGHTS_5, trim_ratio=0.2)
    np.testing.assert_allclose(result, [14 / 3, 20.0, 1 / 3])


def test_trimmed_mean_rounds_the_trim_count_down() -> None:
    # 0.39 * 5 = 1.95 -> drops 1 per end, same as 0.2
    result = trimmed_mean(FIVE_WITH_OUTLIER, UNIT_WEIGHTS_5, trim_ratio=0.39)
    np.testing.assert_allclose(result, [14 / 3, 20.0, 1 / 3])
    # 0.4 * 5 = 2 -> drops 2 per end, leaving only the median
    result = trimmed_mean(FIVE_WITH_OUTLIER, UNIT_WEIGHTS_5, trim_ratio=0.4)
    np.testing.assert_allclose(result, [3.0, 20.0, 0.0])


def test_trimmed_mean_with_zero_trim_is_the_unweighted_mean() -> None:
    # (1+2+3+9+100)/5 = 23 ; (10+20+30+40-500)/5 = -80 ; (-3-1+0+2+50)/5 = 9.6
    result = trimmed_mean(FIVE_WITH_OUTLIER, np.array([5.0, 1, 1, 1, 1]), trim_ratio=0.0)
    np.testing.assert_allclose(result, [23.0, -80.0, 9.6])


def test_trimmed_mean_count_is_not_fooled_by_float_rounding() -> None:
    # 0.29 * 100 == 28.999999999999996 in float64; Yin et al.'s beta*n is 29.
    updates = (np.arange(100.0) ** 2).reshape(100, 1)
    result = trimmed_mean(updates, np.ones(100), trim_ratio=0.29)
    kept = np.arange(29, 71) ** 2  # 29 dropped at each end
    np.testing.assert_allclose(result, [kept.mean()])


@pytest.mark.parametrize("trim_ratio", [-0.1, 0.5, 0.7, float("nan")])
def test_trimmed_mean_rejects_trim_ratio_outside_zero_to_half(trim_ratio: float) -> None:
    with pytest.raises(AggregationError, match="trim_ratio"):
        trimmed_mean(FIVE_WITH_OUTLIER, UNIT_WEIGHTS_5, trim_ratio=trim_ratio)


# --------------------------------------------------------------------------- krum


def test_krum_selects_the_party_closest_to_its_neighbours() -> None:
    assert krum_select(KRUM_CASE, num_byzantine=1).tolist() == [0]
    np.testing.assert_allclose(krum(KRUM_CASE, UNIT_WEIGHTS_5, num_byzantine=1), [1.0, 2.0])


def test_krum_returns_the_selected_update_whatever_its_weight() -> None:
    weights = np.array([0.5, 100.0, 100.0, 100.0, 100.0])
    np.testing.assert_allclose(krum(KRUM_CASE, weights, num_byzantine=1), [1.0, 2.0])


def test_multi_krum_returns_the_weighted_mean_of_the_lowest_scores() -> None:
    assert krum_select(KRUM_CASE, num_byzantine=1, num_selected=3).tolist() == [0, 1, 2]
    weights = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    # rows 0, 1, 2 with weights 1, 1, 2: ((1,2) + (2,2) + 2*(1,3)) / 4 = (5/4, 10/4)
    result = krum(KRUM_CASE, weights, num_byzantine=1, num_selected=3)
    np.testing.assert_allclose(result, [1.25, 2.5])


def test_multi_krum_selects_in_order_of_increasing_score() -> None:
    order = krum_select(KRUM_CASE, num_byzantine=1, num_selected=5)
    assert order.tolist() == [0, 1, 2, 3, 4]


def test_krum_breaks_equal_scores_by_the_lower_index() -> None:
    # 1-D points 0, 1, 3, 4, 100 with f = 1 (2 neighbours):
    # scores 1+9=10, 1+4=5, 1+4=5, 1+9=10, huge -> rows 1 and 2 tie, then rows 0 and 3 tie
    updates = np.array([[0.0], [1.0], [3.0], [4.0], [100.0]])
    assert krum_select(updates, num_byzantine=1).tolist() == [1]
    assert krum_select(updates, num_byzantine=1, num_selected=4).tolist() == [1, 2, 0, 3]


def test_krum_without_byzantine_parties_uses_all_but_two_neighbours() -> None:
    # n = 3, f = 0 -> 1 neighbour. Points 0, 1, 5: scores 1, 1, 16 -> row 0 (tie with row 1)
    updates = np.array([[0.0], [1.0], [5.0]])
    assert krum_select(updates, num_byzantine=0).tolist() == [0]


@pytest.mark.parametrize(("n_parties", "num_byzantine"), [(4, 1), (3, 1), (6, 2), (2, 0)])
def test_krum_needs_more_than_two_f_plus_two_parties(n_parties: int, num_byzantine: int) -> None:
    updates = np.arange(float(n_parties * 2)).reshape(n_parties, 2)
    needed = 2 * num_byzantine + 3
    with pytest.raises(AggregationError, match=f"at least {needed} parties; got {n_parties}"):
        krum(updates, np.ones(n_parties), num_byzantine=num_byzantine)
    with pytest.raises(AggregationError, match=f"at least {needed} parties"):
        krum_select(updates, num_byzantine=num_byzantine)


def test_krum_accepts_exactly_two_f_plus_three_parties() -> None:
    updates = np.arange(14.0).reshape(7, 2)
    assert krum(updates, np.ones(7), num_byzantine=2).shape == (2,)


@pytest.mark.parametrize("num_selected", [0, 6, -1])
def test_multi_krum_rejects_a_selection_size_outside_one_to_n(num_selected: int) -> None:
    with pytest.raises(AggregationError, match="num_selected"):
        krum(KRUM_CASE, UNIT_WEIGHTS_5, num_byzantine=1, num_selected=num_selected)


def test_krum_rejects_negative_byzantine_count() -> None:
    with pytest.raises(AggregationError, match="num_byzantine"):
        krum(KRUM_CASE, UNIT_WEIGHTS_5, num_byzantine=-1)


def test_krum_refuses_a_selection_whose_weights_are_all_zero() -> None:
    weights = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(AggregationError, match=r"kept party rows \[0\].*weight 0"):
        krum(KRUM_CASE, weights, num_byzantine=1)


# --------------------------------------------------------------------------- outliers

# Seven parties: six honest ones near (1, -1, 0.5), one sending a huge update.
HONEST = np.array(
    [
        [1.01, -0.99, 0.52],
        [0.98, -1.02, 0.49],
        [1.00, -1.00, 0.50],
        [1.03, -0.97, 0.48],
        [0.99, -1.01, 0.51],
        [0.97, -1.03, 0.53],
    ]
)
ATTACK = np.array([[1e6, -1e6, 1e6]])
WITH_ATTACK = np.vstack([HONEST, ATTACK])
HONEST_CENTRE = np.array([1.0, -1.0, 0.5])


@pytest.mark.parametrize(
    "aggregate",
    [
        pytest.param(coordinate_median, id="median"),
        pytest.param(lambda u, w: trimmed_mean(u, w, trim_ratio=0.2), id="trimmed-mean"),
        pytest.param(lambda u, w: krum(u, w, num_byzantine=1), id="krum"),
        pytest.param(lambda u, w: krum(u, w, num_byzantine=1, num_selected=5), id="multi-krum"),
    ],
)
def test_robust_aggregators_out_vote_a_single_huge_outlier(
    aggregate: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> None:
    # the attacker also claims far more examples than anyone else
    weights = np.array([10.0, 12.0, 9.0, 11.0, 10.0, 8.0, 1e6])
    result = aggregate(WITH_ATTACK, weights)
    np.testing.assert_allclose(result, HONEST_CENTRE, atol=0.05)


def test_plain_mean_is_dragged_away_by_the_same_outlier() -> None:
    result = weighted_mean(WITH_ATTACK, np.ones(7))
    assert np.abs(result - HONEST_CENTRE).max() > 1e5


def test_multi_krum_never_keeps_the_outlier() -> None:
    kept = krum_select(WITH_ATTACK, num_byzantine=1, num_selected=6)
    assert 6 not in kept.tolist()


def test_krum_ranks_an_outlier_whose_distance_overflows_last_without_warnings() -> None:
    updates = np.vstack([HONEST[:4], [[1e200, -1e200, 1e200]]])  # squared distance -> inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = krum_select(updates, num_byzantine=1, num_selected=4)
        result = krum(updates, np.ones(5), num_byzantine=1)
    assert sorted(kept.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(result, HONEST_CENTRE, atol=0.05)
