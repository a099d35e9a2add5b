"""Server optimizers against hand-computed two-step cases, and their checkpointable state."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedsilo.aggregation import ServerOptimizer, ServerOptimizerKind, ServerOptimizerSpec
from fedsilo.errors import AggregationError, ConfigError

# Small round numbers so every expected value below can be checked by hand.
HAND = {"learning_rate": 1.0, "beta_1": 0.5, "beta_2": 0.5, "tau": 1.0}


def _two_steps(
    spec: ServerOptimizerSpec, x0: list[float], delta_1: list[float], delta_2: list[float]
) -> tuple[ServerOptimizer, np.ndarray, np.ndarray]:
    optimizer = spec.create()
    x1 = optimizer.step(np.array(x0), np.array(delta_1))
    x2 = optimizer.step(x1, np.array(delta_2))
    return optimizer, x1, x2


# --------------------------------------------------------------------------- hand cases


def test_sgd_adds_the_scaled_delta() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.SGD, learning_rate=0.5)
    optimizer, x1, x2 = _two_steps(spec, [1.0, 2.0], [2.0, -2.0], [4.0, 0.0])
    np.testing.assert_allclose(x1, [2.0, 1.0])  # (1, 2) + 0.5 * (2, -2)
    np.testing.assert_allclose(x2, [4.0, 1.0])  # (2, 1) + 0.5 * (4, 0)
    assert set(optimizer.state_dict()) == {"step"}


def test_avgm_accumulates_server_momentum() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM, learning_rate=0.5, momentum=0.5)
    optimizer, x1, x2 = _two_steps(spec, [1.0, 2.0], [2.0, -2.0], [4.0, 0.0])
    # v1 = (2, -2); x1 = (1, 2) + 0.5 * (2, -2) = (2, 1)
    np.testing.assert_allclose(x1, [2.0, 1.0])
    # v2 = 0.5 * (2, -2) + (4, 0) = (5, -1); x2 = (2, 1) + 0.5 * (5, -1) = (4.5, 0.5)
    np.testing.assert_allclose(x2, [4.5, 0.5])
    np.testing.assert_allclose(optimizer.state_dict()["v"], [5.0, -1.0])


def test_adam_follows_reddi_algorithm_2_without_bias_correction() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM, **HAND)
    optimizer, x1, x2 = _two_steps(spec, [1.0, -1.0], [7.0, -1.0], [5.0, 1.0])
    # start: m = 0, v = tau^2 = 1
    # step 1, coord 0: m = 0.5*7 = 3.5, v = 0.5*1 + 0.5*49 = 25, x = 1 + 3.5/(5+1) = 19/12
    #         coord 1: m = -0.5, v = 0.5 + 0.5 = 1, x = -1 - 0.5/(1+1) = -1.25
    np.testing.assert_allclose(x1, [19 / 12, -1.25])
    # step 2, coord 0: m = 1.75 + 2.5 = 4.25, v = 12.5 + 12.5 = 25, x = 19/12 + 4.25/6 = 55/24
    #         coord 1: m = -0.25 + 0.5 = 0.25, v = 0.5 + 0.5 = 1, x = -1.25 + 0.25/2 = -1.125
    np.testing.assert_allclose(x2, [55 / 24, -1.125])
    state = optimizer.state_dict()
    np.testing.assert_allclose(state["m"], [4.25, 0.25])
    np.testing.assert_allclose(state["v"], [25.0, 1.0])


def test_yogi_moves_v_additively_towards_delta_squared() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.YOGI, **HAND)
    optimizer, x1, x2 = _two_steps(spec, [0.0, -1.0], [4.0, -1.0], [2.0, 3.0])
    # start: m = 0, v = 1
    # step 1, coord 0: delta^2 = 16 > v: v = 1 + 0.5*16 = 9, m = 2, x = 0 + 2/(3+1) = 0.5
    #         coord 1: delta^2 = 1 = v, sign 0: v = 1, m = -0.5, x = -1 - 0.5/2 = -1.25
    np.testing.assert_allclose(x1, [0.5, -1.25])
    # step 2, coord 0: delta^2 = 4 < v = 9: v = 9 - 0.5*4 = 7, m = 1 + 1 = 2,
    #                  x = 0.5 + 2/(sqrt(7)+1)
    #         coord 1: delta^2 = 9 > v = 1: v = 1 + 0.5*9 = 5.5, m = -0.25 + 1.5 = 1.25,
    #                  x = -1.25 + 1.25/(sqrt(5.5)+1)
    np.testing.assert_allclose(
        x2, [0.5 + 2 / (math.sqrt(7) + 1), -1.25 + 1.25 / (math.sqrt(5.5) + 1)]
    )
    state = optimizer.state_dict()
    np.testing.assert_allclose(state["m"], [2.0, 1.25])
    np.testing.assert_allclose(state["v"], [7.0, 5.5])


def test_adagrad_sums_squared_deltas_and_keeps_a_first_moment() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAGRAD, **HAND)
    optimizer, x1, x2 = _two_steps(spec, [0.0, 2.0], [2.0, 0.0], [-2.0, 3.0])
    # start: m = 0, v = 1
    # step 1, coord 0: m = 1, v = 1 + 4 = 5, x = 1/(sqrt(5)+1)
    #         coord 1: m = 0, v = 1, x = 2
    np.testing.assert_allclose(x1, [1 / (math.sqrt(5) + 1), 2.0])
    # step 2, coord 0: m = 0.5 - 1 = -0.5, v = 5 + 4 = 9, x = x1 - 0.5/(3+1)
    #         coord 1: m = 1.5, v = 1 + 9 = 10, x = 2 + 1.5/(sqrt(10)+1)
    np.testing.assert_allclose(
        x2, [1 / (math.sqrt(5) + 1) - 0.125, 2.0 + 1.5 / (math.sqrt(10) + 1)]
    )
    np.testing.assert_allclose(optimizer.state_dict()["v"], [9.0, 10.0])


def test_adagrad_ignores_beta_2() -> None:
    a = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAGRAD, beta_2=0.1).create()
    b = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAGRAD, beta_2=0.9).create()
    x, d = np.array([1.0, 2.0]), np.array([0.3, -0.7])
    np.testing.assert_array_equal(a.step(x, d), b.step(x, d))


def test_adam_with_paper_defaults_starts_v_at_tau_squared() -> None:
    optimizer = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM).create()
    # beta_1 = 0.9, beta_2 = 0.99, tau = 1e-3: m = 0.1, v = 0.99 * 1e-6 + 0.01 * 1
    x1 = optimizer.step(np.array([0.0]), np.array([1.0]))
    np.testing.assert_allclose(x1, [0.1 / (math.sqrt(0.99e-6 + 0.01) + 1e-3)])


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 6),
)
def test_sgd_with_unit_learning_rate_is_params_plus_delta(data: st.DataObject, n: int) -> None:
    floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    params = data.draw(hnp.arrays(np.float64, (n,), elements=floats))
    delta = data.draw(hnp.arrays(np.float64, (n,), elements=floats))
    optimizer = ServerOptimizerSpec().create()
    np.testing.assert_array_equal(optimizer.step(params, delta), params + delta)


def test_step_returns_a_new_float64_array_and_leaves_inputs_alone() -> None:
    for kind in ServerOptimizerKind:
        params, delta = np.array([1, 2], dtype=np.float32), np.array([0.5, 0.5])
        out = ServerOptimizerSpec(kind=kind).create().step(params, delta)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(params, np.array([1, 2], dtype=np.float32))
        np.testing.assert_array_equal(delta, [0.5, 0.5])


# --------------------------------------------------------------------------- state


def _random_deltas(seed: int, count: int, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n) for _ in range(count)]


@pytest.mark.parametrize("kind", list(ServerOptimizerKind))
def test_restored_state_gives_identical_subsequent_steps(kind: ServerOptimizerKind) -> None:
    spec = ServerOptimizerSpec(kind=kind, learning_rate=0.3)
    original = spec.create()
    params = np.zeros(4)
    for delta in _random_deltas(0, 2):
        params = original.step(params, delta)

    restored = spec.create()
    restored.load_state_dict(original.state_dict())
    assert restored.step_count == original.step_count == 2

    p_original, p_restored = params.copy(), params.copy()
    for delta in _random_deltas(1, 3):
        p_original = original.step(p_original, delta)
        p_restored = restored.step(p_restored, delta)
        np.testing.assert_array_equal(p_restored, p_original)


@pytest.mark.parametrize("kind", list(ServerOptimizerKind))
def test_state_dict_holds_a_zero_dimensional_step_counter(kind: ServerOptimizerKind) -> None:
    optimizer = ServerOptimizerSpec(kind=kind).create()
    assert optimizer.state_dict() == {"step": np.array(0)}
    optimizer.step(np.zeros(3), np.ones(3))
    step = optimizer.state_dict()["step"]
    assert step.shape == () and step.dtype == np.int64 and int(step) == 1


def test_state_dict_returns_copies() -> None:
    optimizer = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM).create()
    optimizer.step(np.zeros(2), np.ones(2))
    saved = optimizer.state_dict()
    saved["m"][:] = 99.0
    assert not np.any(optimizer.state_dict()["m"] == 99.0)


def test_loaded_state_is_copied_from_the_callers_arrays() -> None:
    source = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM).create()
    source.step(np.zeros(2), np.ones(2))
    state = source.state_dict()
    target = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM).create()
    target.load_state_dict(state)
    state["v"][:] = 99.0
    np.testing.assert_array_equal(target.state_dict()["v"], [1.0, 1.0])


def test_loading_a_fresh_state_behaves_like_a_fresh_optimizer() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.YOGI)
    used = spec.create()
    used.step(np.zeros(2), np.ones(2))
    used.load_state_dict(spec.create().state_dict())
    fresh = spec.create()
    np.testing.assert_array_equal(
        used.step(np.zeros(2), np.array([0.2, -0.4])),
        fresh.step(np.zeros(2), np.array([0.2, -0.4])),
    )


def test_state_from_another_kind_is_rejected_with_a_hint() -> None:
    avgm = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM).create()
    avgm.step(np.zeros(2), np.ones(2))
    adam = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM).create()
    with pytest.raises(AggregationError, match="different server optimizer"):
        adam.load_state_dict(avgm.state_dict())


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({}, "lacks the 'step'"),
        ({"step": np.array(-1)}, "nonnegative integer"),
        ({"step": np.array(1.5)}, "nonnegative integer"),
        ({"step": np.array([1])}, "0-d"),
        ({"step": np.array(1), "m": np.zeros(2)}, "expects state arrays"),
        ({"step": np.array(1), "m": np.zeros(2), "v": np.zeros(3)}, "different shapes"),
        ({"step": np.array(1), "m": np.zeros(2), "v": -np.ones(2)}, "negative"),
        ({"step": np.array(1), "m": np.full(2, np.nan), "v": np.ones(2)}, "NaN"),
    ],
)
def test_malformed_state_is_rejected(state: dict[str, np.ndarray], message: str) -> None:
    optimizer = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM).create()
    with pytest.raises(AggregationError, match=message):
        optimizer.load_state_dict(state)


# --------------------------------------------------------------------------- validation


def test_step_rejects_delta_of_another_shape() -> None:
    optimizer = ServerOptimizerSpec().create()
    with pytest.raises(AggregationError, match=r"delta has shape \(3,\).*\(2,\)"):
        optimizer.step(np.zeros(2), np.zeros(3))


def test_step_rejects_params_whose_shape_changed_since_the_state_was_made() -> None:
    optimizer = ServerOptimizerSpec(kind=ServerOptimizerKind.ADAM).create()
    optimizer.step(np.zeros(2), np.ones(2))
    with pytest.raises(AggregationError, match="model changed"):
        optimizer.step(np.zeros(3), np.ones(3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_step_rejects_non_finite_inputs(bad: float) -> None:
    optimizer = ServerOptimizerSpec().create()
    with pytest.raises(AggregationError, match=r"delta.*NaN or infinite"):
        optimizer.step(np.zeros(2), np.array([0.0, bad]))
    with pytest.raises(AggregationError, match=r"params.*NaN or infinite"):
        optimizer.step(np.array([bad, 0.0]), np.zeros(2))
    assert optimizer.step_count == 0


def test_a_failed_step_leaves_the_state_unchanged() -> None:
    optimizer = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM, learning_rate=1.0).create()
    optimizer.step(np.zeros(1), np.array([1.0]))
    before = optimizer.state_dict()
    with pytest.raises(AggregationError, match="NaN or infinite parameters"):
        optimizer.step(np.array([1e308]), np.array([1e308]))  # x + v overflows
    after = optimizer.state_dict()
    assert after.keys() == before.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 0.0),
        ("learning_rate", -1.0),
        ("learning_rate", float("inf")),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("beta_1", 1.0),
        ("beta_2", 1.5),
        ("tau", 0.0),
        ("kind", "adam"),
    ],
)
def test_invalid_spec_raises_config_error(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field.replace("kind", "optimizer kind")):
        ServerOptimizerSpec(**{field: value})  # type: ignore[arg-type]


def test_kinds_are_spelled_as_in_config_files() -> None:
    assert [k.value for k in ServerOptimizerKind] == ["sgd", "avgm", "adam", "yogi", "adagrad"]


def test_spec_is_frozen_and_creates_independent_optimizers() -> None:
    spec = ServerOptimizerSpec(kind=ServerOptimizerKind.AVGM)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.momentum = 0.1  # type: ignore[misc]
    a, b = spec.create(), spec.create()
    a.step(np.zeros(1), np.ones(1))
    assert a.step_count == 1 and b.step_count == 0
