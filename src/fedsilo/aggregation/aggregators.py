"""Plain and Byzantine-robust aggregation of party updates, as pure functions.

Every aggregator takes ``updates`` of shape ``(n_parties, n_params)`` (one flattened update or
parameter vector per party, one row each) and ``weights`` of shape ``(n_parties,)`` (each
party's number of training examples) and returns one float64 vector of shape ``(n_params,)``.

- :func:`weighted_mean` — FedAvg, McMahan et al. 2017, "Communication-Efficient Learning of
  Deep Networks from Decentralized Data", Sec. 2, Alg. 1: ``sum_k (n_k / n) x_k``.
- :func:`coordinate_median` and :func:`trimmed_mean` — Yin et al. 2018, "Byzantine-Robust
  Distributed Learning: Towards Optimal Statistical Rates", Sec. 3, Alg. 1 (options I and II,
  the coordinate-wise median and the coordinate-wise beta-trimmed mean). Both are unweighted,
  as in the paper: ``weights`` are validated and otherwise ignored.
- :func:`krum` and :func:`krum_select` — Blanchard et al. 2017, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent", Sec. 4 (Krum) and Sec. 5 (Multi-Krum);
  Multi-Krum as used by El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed
  Learning in Byzantium".

:class:`AggregatorSpec` composes them from configuration (see ``fedsilo.config``).
All invalid input raises :class:`fedsilo.errors.AggregationError`; an invalid spec raises
:class:`fedsilo.errors.ConfigError`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedsilo.errors import AggregationError, ConfigError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

__all__ = [
    "AggregatorKind",
    "AggregatorSpec",
    "coordinate_median",
    "krum",
    "krum_select",
    "trimmed_mean",
    "weighted_mean",
]


# --------------------------------------------------------------------------- validation


def _as_updates(updates: np.ndarray) -> FloatArray:
    array = np.asarray(updates)
    if array.dtype.kind not in "iuf":
        raise AggregationError(f"updates must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise AggregationError(
            "updates must have shape (n_parties, n_params), one flattened vector per party; "
            f"got an array with shape {array.shape}"
        )
    n_parties, n_params = array.shape
    if n_parties == 0:
        raise AggregationError("there are no updates to aggregate (0 parties)")
    if n_params == 0:
        raise AggregationError("the updates are empty (0 parameters per party)")
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(values))[0]})
        raise AggregationError(
            f"updates from party rows {bad} contain NaN or infinite values; "
            "reject those parties before aggregating"
        )
    return values


def _as_weights(weights: np.ndarray, n_parties: int) -> FloatArray:
    array = np.asarray(weights)
    if array.dtype.kind not in "iuf":
        raise AggregationError(f"weights must be a real numeric array, got dtype {array.dtype}")
    if array.shape != (n_parties,):
        raise AggregationError(
            f"weights must have shape ({n_parties},), one per party row of the updates; "
            f"got shape {array.shape}"
        )
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise AggregationError("weights contain NaN or infinite values")
    if (values < 0).any():
        bad = [int(i) for i in np.nonzero(values < 0)[0]]
        raise AggregationError(
            f"weights must be nonnegative example counts; party rows {bad} are negative"
        )
    if values.sum() <= 0:
        raise AggregationError("weights sum to zero: no party reported any training examples")
    return values


def _validated(updates: np.ndarray, weights: np.ndarray) -> tuple[FloatArray, FloatArray]:
    values = _as_updates(updates)
    return values, _as_weights(weights, values.shape[0])


def _finite_result(result: FloatArray, name: str) -> FloatArray:
    if not np.isfinite(result).all():
        raise AggregationError(
            f"{name} overflowed: the updates are finite but too large to combine in float64"
        )
    return result


def _weighted_rows(values: FloatArray, weights: FloatArray) -> FloatArray:
    proportions = weights / weights.sum()
    result: FloatArray = proportions @ values
    return result


# --------------------------------------------------------------------------- aggregators


def weighted_mean(updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    """FedAvg (McMahan et al. 2017, Alg. 1): ``sum_k (n_k / n) x_k`` with ``n = sum_k n_k``."""
    values, w = _validated(updates, weights)
    return _finite_result(_weighted_rows(values, w), "weighted mean")


def coordinate_median(updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    """Coordinate-wise median (Yin et al. 2018, Alg. 1 option I).

    Unweighted, as in the paper: ``weights`` are validated and then ignored, so a party with
    many examples counts as much as one with few. For an even number of parties the median of
    a coordinate is the mean of its two middle values.
    """
    values, _ = _validated(updates, weights)
    with np.errstate(over="ignore", invalid="ignore"):  # reported by _finite_result
        result: FloatArray = np.median(values, axis=0)
    return _finite_result(result, "coordinate-wise median")


def trimmed_mean(updates: np.ndarray, weights: np.ndarray, *, trim_ratio: float) -> FloatArray:
    """Coordinate-wise trimmed mean (Yin et al. 2018, Alg. 1 option II, with beta = trim_ratio).

    For each coordinate separately, sort the ``n`` parties' values, drop the
    ``floor(trim_ratio * n)`` smallest and as many of the largest, and average the rest.
    Unweighted, as in the paper: ``weights`` are validated and then ignored.
    ``trim_ratio`` must lie in ``[0, 0.5)``; ``trim_ratio = 0`` is the plain unweighted mean.
    The floor tolerates float rounding (``0.29 * 100`` trims 29, not 28).
    """
    if not (isinstance(trim_ratio, int | float) and 0.0 <= trim_ratio < 0.5):
        raise AggregationError(f"trim_ratio must be in [0, 0.5), got {trim_ratio!r}")
    values, _ = _validated(updates, weights)
    n_parties = values.shape[0]
    n_trimmed = math.floor(trim_ratio * n_parties + 1e-9)
    if n_parties - 2 * n_trimmed < 1:
        raise AggregationError(
            f"trim_ratio={trim_ratio} trims {n_trimmed} values from each end of "
            f"{n_parties} parties, leaving none to average; lower trim_ratio"
        )
    kept = np.sort(values, axis=0)[n_trimmed : n_parties - n_trimmed]
    with np.errstate(over="ignore", invalid="ignore"):  # reported by _finite_result
        result: FloatArray = kept.mean(axis=0)
    return _finite_result(result, "trimmed mean")


def _check_krum_arguments(n_parties: int, num_byzantine: int, num_selected: int) -> None:
    if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, int | np.integer):
        raise AggregationError(f"num_byzantine must be an integer, got {num_byzantine!r}")
    if num_byzantine < 0:
        raise AggregationError(f"num_byzantine must be >= 0, got {num_byzantine}")
    if n_parties <= 2 * num_byzantine + 2:
        message = (
            f"Krum tolerating num_byzantine={num_byzantine} needs n > 2f + 2, i.e. at least "
            f"{2 * num_byzantine + 3} parties; got {n_parties}."
        )
        if n_parties >= 3:
            message += f" Add parties or lower num_byzantine to at most {(n_parties - 3) // 2}."
        else:
            message += " Add parties."
        raise AggregationError(message)
    if isinstance(num_selected, bool) or not isinstance(num_selected, int | np.integer):
        raise AggregationError(f"num_selected must be an integer, got {num_selected!r}")
    if not 1 <= num_selected <= n_parties:
        raise AggregationError(
            f"num_selected must be between 1 and the number of parties ({n_parties}), "
            f"got {num_selected}"
        )


def _krum_scores(values: FloatArray, num_byzantine: int) -> FloatArray:
    """score_i = sum of squared distances from x_i to its n - f - 2 nearest other vectors."""
    n_parties = values.shape[0]
    n_neighbours = n_parties - num_byzantine - 2
    scores = np.empty(n_parties, dtype=np.float64)
    for i in range(n_parties):
        # Row by row keeps memory at O(n * n_params) instead of O(n^2 * n_params).
        # Far-away parties may overflow to an infinite distance; that only ranks them last.
        with np.errstate(over="ignore", invalid="ignore"):
            squared = np.sum((values - values[i]) ** 2, axis=1)
            scores[i] = np.sort(np.delete(squared, i))[:n_neighbours].sum()
    return scores


def krum_select(updates: np.ndarray, num_byzantine: int, num_selected: int = 1) -> IntArray:
    """Indices of the parties Krum (``num_selected = 1``) or Multi-Krum keeps.

    Returns ``num_selected`` row indices ordered by increasing Krum score; equal scores are
    broken by the lower index, so the result is deterministic. Requires
    ``n_parties > 2 * num_byzantine + 2`` (Blanchard et al. 2017, Sec. 4).
    """
    values = _as_updates(updates)
    _check_krum_arguments(values.shape[0], num_byzantine, num_selected)
    scores = _krum_scores(values, int(num_byzantine))
    order: IntArray = np.argsort(scores, kind="stable").astype(np.intp)
    return order[: int(num_selected)]


def krum(
    updates: np.ndarray,
    weights: np.ndarray,
    *,
    num_byzantine: int,
    num_selected: int = 1,
) -> FloatArray:
    """Krum (``num_selected = 1``) or Multi-Krum (``num_selected > 1``).

    Scores every party by the sum of squared Euclidean distances to its
    ``n - num_byzantine - 2`` nearest neighbours, keeps the ``num_selected`` lowest scores
    (ties to the lower index, see :func:`krum_select`) and returns the mean of the kept rows
    weighted by their ``weights``. With ``num_selected = 1`` that is the kept row itself.
    """
    values, w = _validated(updates, weights)
    selected = krum_select(values, num_byzantine, num_selected)
    kept_weights = w[selected]
    if kept_weights.sum() <= 0:
        raise AggregationError(
            f"Krum kept party rows {selected.tolist()}, which all have weight 0; "
            "their weighted mean is undefined"
        )
    return _finite_result(_weighted_rows(values[selected], kept_weights), "Krum")


# --------------------------------------------------------------------------- composition


class AggregatorKind(enum.Enum):
    """Which aggregation rule combines the parties' updates."""

    MEAN = "mean"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed-mean"
    KRUM = "krum"
    MULTI_KRUM = "multi-krum"


@dataclass(frozen=True)
class AggregatorSpec:
    """An aggregation rule and its parameters, as read from the job configuration.

    ``trim_ratio`` is used by ``TRIMMED_MEAN``; ``num_byzantine`` by ``KRUM`` and
    ``MULTI_KRUM``; ``num_selected`` only by ``MULTI_KRUM`` (``KRUM`` always keeps one
    party), where ``None`` means ``n_parties - num_byzantine``.
    """

    kind: AggregatorKind = AggregatorKind.MEAN
    trim_ratio: float = 0.1
    num_byzantine: int = 0
    num_selected: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AggregatorKind):
            raise ConfigError(
                f"aggregator kind must be one of {[k.value for k in AggregatorKind]}, "
                f"got {self.kind!r}"
            )
        if not 0.0 <= self.trim_ratio < 0.5:
            raise ConfigError(f"trim_ratio must be in [0, 0.5), got {self.trim_ratio}")
        if self.num_byzantine < 0:
            raise ConfigError(f"num_byzantine must be >= 0, got {self.num_byzantine}")
        if self.num_selected is not None and self.num_selected < 1:
            raise ConfigError(f"num_selected must be >= 1 or unset, got {self.num_selected}")

    @property
    def is_robust(self) -> bool:
        """True for every rule designed to tolerate Byzantine parties, i.e. all but MEAN."""
        return self.kind is not AggregatorKind.MEAN

    def aggregate(self, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
        """Combine ``updates`` (n_parties, n_params) with ``weights`` (n_parties,)."""
        return _RULES[self.kind](self, updates, weights)


def _spec_mean(spec: AggregatorSpec, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    return weighted_mean(updates, weights)


def _spec_median(spec: AggregatorSpec, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    return coordinate_median(updates, weights)


def _spec_trimmed(spec: AggregatorSpec, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    return trimmed_mean(updates, weights, trim_ratio=spec.trim_ratio)


def _spec_krum(spec: AggregatorSpec, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    return krum(updates, weights, num_byzantine=spec.num_byzantine, num_selected=1)


def _spec_multi_krum(spec: AggregatorSpec, updates: np.ndarray, weights: np.ndarray) -> FloatArray:
    n_parties = np.shape(updates)[0] if np.ndim(updates) >= 1 else 0
    selected = spec.num_selected
    if selected is None:
        selected = max(n_parties - spec.num_byzantine, 1)
    return krum(updates, weights, num_byzantine=spec.num_byzantine, num_selected=selected)


_RULES: dict[AggregatorKind, Callable[[AggregatorSpec, np.ndarray, np.ndarray], FloatArray]] = {
    AggregatorKind.MEAN: _spec_mean,
    AggregatorKind.MEDIAN: _spec_median,
    AggregatorKind.TRIMMED_MEAN: _spec_trimmed,
    AggregatorKind.KRUM: _spec_krum,
    AggregatorKind.MULTI_KRUM: _spec_multi_krum,
}
