"""Server optimizers: turn the aggregated pseudo-gradient into new global parameters.

The coordinator aggregates ``delta = aggregate(client_params - global_params)``, a direction
to *add* to the global parameters ``x``. A server optimizer applies it (``eta`` is the server
learning rate, all operations are elementwise):

- ``sgd`` — ``x + eta * delta``; with ``eta = 1`` this is plain FedAvg (McMahan et al. 2017,
  Alg. 1).
- ``avgm`` — FedAvgM, Hsu et al. 2019, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification", Sec. 3 (server momentum):
  ``v = momentum * v + delta``; ``x + eta * v``, with ``v`` starting at 0.
- ``adagrad``, ``adam``, ``yogi`` — FedAdagrad, FedAdam and FedYogi exactly as in Reddi et
  al. 2021, "Adaptive Federated Optimization", Sec. 3, Alg. 2, with ``m`` and ``v`` the
  first- and second-moment estimates::

      m = beta_1 * m + (1 - beta_1) * delta                        (all three)
      v = v + delta**2                                             FedAdagrad
      v = beta_2 * v + (1 - beta_2) * delta**2                     FedAdam
      v = v - (1 - beta_2) * delta**2 * sign(v - delta**2)         FedYogi
      x = x + eta * m / (sqrt(v) + tau)

  There is no bias correction, as in Alg. 2. The state starts at ``m = 0`` and
  ``v = tau**2`` (Alg. 2 asks for ``v_{-1} >= tau**2``; we take the smallest allowed value).
  ``tau`` is the paper's adaptivity parameter (the epsilon of Adam-style methods).

Each rule is a pure function ``(spec, x, delta, state) -> (new_x, new_state)``;
:class:`ServerOptimizer` only holds the current state between rounds, and exposes it as a
``dict[str, np.ndarray]`` (with a 0-d ``"step"`` counter) for checkpoints.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedsilo.errors import AggregationError, ConfigError

FloatArray = NDArray[np.float64]
State = dict[str, FloatArray]

__all__ = ["ServerOptimizer", "ServerOptimizerKind", "ServerOptimizerSpec"]

STEP_KEY = "step"


class ServerOptimizerKind(enum.Enum):
    """Which server update rule applies the aggregated pseudo-gradient."""

    SGD = "sgd"
    AVGM = "avgm"
    ADAM = "adam"
    YOGI = "yogi"
    ADAGRAD = "adagrad"


@dataclass(frozen=True)
class ServerOptimizerSpec:
    """A server update rule and its hyperparameters, as read from the job configuration.

    ``momentum`` is used by ``avgm``; ``beta_1``, ``beta_2`` and ``tau`` by the adaptive rules
    (``adagrad`` ignores ``beta_2``). Defaults follow Reddi et al. 2021.
    """

    kind: ServerOptimizerKind = ServerOptimizerKind.SGD
    learning_rate: float = 1.0
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ServerOptimizerKind):
            raise ConfigError(
                f"server optimizer kind must be one of "
                f"{[k.value for k in ServerOptimizerKind]}, got {self.kind!r}"
            )
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(
                f"server learning_rate must be a finite number > 0, got {self.learning_rate}"
            )
        for name in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"server optimizer {name} must be in [0, 1), got {value}")
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise ConfigError(f"server optimizer tau must be a finite number > 0, got {self.tau}")

    def create(self) -> ServerOptimizer:
        """A fresh optimizer with this rule and an empty state (step 0)."""
        return ServerOptimizer(self)


# --------------------------------------------------------------------------- update rules

StepFn = Callable[[ServerOptimizerSpec, FloatArray, FloatArray, State], tuple[FloatArray, State]]
InitFn = Callable[[ServerOptimizerSpec, tuple[int, ...]], State]


def _init_none(spec: ServerOptimizerSpec, shape: tuple[int, ...]) -> State:
    return {}


def _init_momentum(spec: ServerOptimizerSpec, shape: tuple[int, ...]) -> State:
    return {"v": np.zeros(shape, dtype=np.float64)}


def _init_adaptive(spec: ServerOptimizerSpec, shape: tuple[int, ...]) -> State:
    return {
        "m": np.zeros(shape, dtype=np.float64),
        "v": np.full(shape, spec.tau**2, dtype=np.float64),
    }


def _sgd_step(
    spec: ServerOptimizerSpec, x: FloatArray, delta: FloatArray, state: State
) -> tuple[FloatArray, State]:
    return x + spec.learning_rate * delta, {}


def _avgm_step(
    spec: ServerOptimizerSpec, x: FloatArray, delta: FloatArray, state: State
) -> tuple[FloatArray, State]:
    v = spec.momentum * state["v"] + delta
    return x + spec.learning_rate * v, {"v": v}


def _first_moment(spec: ServerOptimizerSpec, delta: FloatArray, state: State) -> FloatArray:
    m: FloatArray = spec.beta_1 * state["m"] + (1.0 - spec.beta_1) * delta
    return m


def _adaptive_update(
    spec: ServerOptimizerSpec, x: FloatArray, m: FloatArray, v: FloatArray
) -> tuple[FloatArray, State]:
    new_x: FloatArray = x + spec.learning_rate * m / (np.sqrt(v) + spec.tau)
    return new_x, {"m": m, "v": v}


def _adagrad_step(
    spec: ServerOptimizerSpec, x: FloatArray, delta: FloatArray, state: State
) -> tuple[FloatArray, State]:
    m = _first_moment(spec, delta, state)
    v = state["v"] + delta**2
    return _adaptive_update(spec, x, m, v)


def _adam_step(
    spec: ServerOptimizerSpec, x: FloatArray, delta: FloatArray, state: State
) -> tuple[FloatArray, State]:
    m = _first_moment(spec, delta, state)
    v = spec.beta_2 * state["v"] + (1.0 - spec.beta_2) * delta**2
    return _adaptive_update(spec, x, m, v)


def _yogi_step(
    spec: ServerOptimizerSpec, x: FloatArray, delta: FloatArray, state: State
) -> tuple[FloatArray, State]:
    m = _first_moment(spec, delta, state)
    squared = delta**2
    v = state["v"] - (1.0 - spec.beta_2) * squared * np.sign(state["v"] - squared)
    return _adaptive_update(spec, x, m, v)


_RULES: dict[ServerOptimizerKind, tuple[InitFn, StepFn]] = {
    ServerOptimizerKind.SGD: (_init_none, _sgd_step),
    ServerOptimizerKind.AVGM: (_init_momentum, _avgm_step),
    ServerOptimizerKind.ADAGRAD: (_init_adaptive, _adagrad_step),
    ServerOptimizerKind.ADAM: (_init_adaptive, _adam_step),
    ServerOptimizerKind.YOGI: (_init_adaptive, _yogi_step),
}

_STATE_NAMES: dict[ServerOptimizerKind, frozenset[str]] = {
    ServerOptimizerKind.SGD: frozenset(),
    ServerOptimizerKind.AVGM: frozenset({"v"}),
    ServerOptimizerKind.ADAGRAD: frozenset({"m", "v"}),
    ServerOptimizerKind.ADAM: frozenset({"m", "v"}),
    ServerOptimizerKind.YOGI: frozenset({"m", "v"}),
}


# --------------------------------------------------------------------------- stateful holder


def _finite_float(array: np.ndarray, what: str) -> FloatArray:
    values = np.asarray(array)
    if values.dtype.kind not in "iuf":
        raise AggregationError(f"{what} must be a real numeric array, got dtype {values.dtype}")
    result = values.astype(np.float64)  # always a copy: callers may mutate their arrays
    if not np.isfinite(result).all():
        raise AggregationError(f"{what} contains NaN or infinite values")
    return result


class ServerOptimizer:
    """Applies one :class:`ServerOptimizerSpec` rule round after round, keeping its state.

    The state (``m``/``v`` moment vectors for the adaptive rules, ``v`` for ``avgm``) is
    created on the first :meth:`step` with the shape of ``params``; afterwards every step must
    use that shape.
    """

    def __init__(self, spec: ServerOptimizerSpec) -> None:
        self.spec = spec
        self._state: State = {}
        self._step_count = 0

    @property
    def step_count(self) -> int:
        """How many steps have been applied (restored by :meth:`load_state_dict`)."""
        return self._step_count

    def step(self, params: np.ndarray, delta: np.ndarray) -> FloatArray:
        """Return the new parameters (float64) after adding ``delta``; update the state."""
        x = _finite_float(params, "params")
        d = _finite_float(delta, "delta (the aggregated update)")
        if x.shape != d.shape:
            raise AggregationError(
                f"delta has shape {d.shape} but params have shape {x.shape}; they must match"
            )
        init, rule = _RULES[self.spec.kind]
        state = self._state if self._step_count > 0 else init(self.spec, x.shape)
        for name, value in state.items():
            if value.shape != x.shape:
                raise AggregationError(
                    f"server optimizer state {name!r} has shape {value.shape} but params have "
                    f"shape {x.shape}; the model changed since the state was created"
                )
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below
            new_x, new_state = rule(self.spec, x, d, state)
        if not (np.isfinite(new_x).all() and all(np.isfinite(v).all() for v in new_state.values())):
            raise AggregationError(
                "the server optimizer step produced NaN or infinite parameters or state; "
                "the update is too large for float64 — lower the server learning rate"
            )
        self._state = new_state
        self._step_count += 1
        return new_x

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state arrays plus ``"step"``, a 0-d int64 array with the step count."""
        out: dict[str, np.ndarray] = {STEP_KEY: np.array(self._step_count, dtype=np.int64)}
        out.update({name: value.copy() for name, value in self._state.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state saved by :meth:`state_dict` from an optimizer of the same kind."""
        kind = self.spec.kind.value
        if STEP_KEY not in state:
            raise AggregationError(f"server optimizer state lacks the {STEP_KEY!r} counter")
        step_array = np.asarray(state[STEP_KEY])
        if step_array.shape != () or step_array.dtype.kind not in "iu" or int(step_array) < 0:
            raise AggregationError(
                f"server optimizer {STEP_KEY!r} must be a 0-d nonnegative integer array, "
                f"got {step_array!r}"
            )
        step_count = int(step_array)
        expected = _STATE_NAMES[self.spec.kind] if step_count > 0 else frozenset()
        found = frozenset(state) - {STEP_KEY}
        if found != expected:
            raise AggregationError(
                f"a {kind!r} server optimizer at step {step_count} expects state arrays "
                f"{sorted(expected)}, got {sorted(found)}; was the checkpoint written with a "
                "different server optimizer?"
            )
        arrays = {
            name: _finite_float(state[name], f"server optimizer state {name!r}")
            for name in sorted(expected)
        }
        shapes = {value.shape for value in arrays.values()}
        if len(shapes) > 1:
            raise AggregationError(
                f"server optimizer state arrays have different shapes: "
                f"{ {name: value.shape for name, value in arrays.items()} }"
            )
        if "m" in arrays and (arrays["v"] < 0).any():
            raise AggregationError("server optimizer state 'v' has negative entries")
        self._state = arrays
        self._step_count = step_count
