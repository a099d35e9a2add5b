"""Post-processing: aggregates from (noisy) summed statistics. Costs no privacy.

With ``n`` rows, ``S1 = sum(x - m)``, ``S2 = sum((x - m)^2)`` (values clipped, centred at the
public midpoint ``m``) and ``M2 = S2 - S1^2 / n``:

* COUNT(*) = n; COUNT(c) = n_c; SUM = S1 + m n_c; AVG = m + S1 / n_c, kept inside the bounds
* VAR_SAMP = M2 / (n - 1), VAR_POP = M2 / n, both at least 0; STDDEV = sqrt(VAR)
* COVAR_SAMP = (Sab - Sa Sb / n) / (n - 1), COVAR_POP = ... / n over rows with both values,
  CORR = (Sab - Sa Sb / n) / sqrt(M2a M2b), kept inside [-1, 1]
* HISTOGRAM = the bin counts; MIN / MAX = the lower edge of the first / upper edge of the last
  bin whose count exceeds ``threshold``; QUANTILE(q) interpolates linearly inside the bin where
  the cumulative count (negative noisy counts read as 0) reaches q times the total.

Answers that are undefined (no rows, a non-positive noisy count) are NaN. All functions work on
arrays of shape (..., groups, statistics) so the CI bootstrap evaluates many draws at once.
"""

from __future__ import annotations

import numpy as np

from fedsilo.analytics.plan import Block, QueryPlan
from fedsilo.analytics.sql import Agg, Aggregate

LINEAR = (Agg.COUNT, Agg.SUM, Agg.HISTOGRAM)


def _get(plan: QueryPlan, stats: np.ndarray, kind: str, cols: tuple[str, ...]) -> np.ndarray:
    return stats[..., plan.offset(Block(kind, cols))][..., 0]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def evaluate(
    agg: Aggregate, plan: QueryPlan, stats: np.ndarray, *, threshold: float = 0.0
) -> np.ndarray:
    """The aggregate per group: shape (..., groups), or (..., groups, bins) for HISTOGRAM."""
    f, cols = agg.func, agg.columns
    if f is Agg.COUNT:
        return _get(plan, stats, "count", ()) if not cols else _get(plan, stats, "n", cols)
    if f in (Agg.HISTOGRAM, Agg.MIN, Agg.MAX, Agg.QUANTILE):
        hist = stats[..., plan.offset(Block("hist", cols, agg.bins))]
        return _from_hist(agg, hist, threshold)
    if f in (Agg.CORR, Agg.COVAR_SAMP, Agg.COVAR_POP):
        return _pair(agg, plan, stats)
    spec = plan.columns[cols[0]]
    n = _get(plan, stats, "n", cols)
    s1 = _get(plan, stats, "s1", cols)
    if f is Agg.SUM:
        return s1 + spec.center * n
    if f is Agg.AVG:
        assert spec.lower is not None and spec.upper is not None
        return np.clip(spec.center + _safe_div(s1, n), spec.lower, spec.upper)
    s2 = _get(plan, stats, "s2", cols)
    m2 = s2 - _safe_div(s1 * s1, n)
    pop = f in (Agg.VAR_POP, Agg.STDDEV_POP)
    var = np.maximum(_safe_div(m2, n if pop else n - 1), 0.0)
    var = np.where(np.isnan(m2) | (n <= (0 if pop else 1)), np.nan, var)
    return np.sqrt(var) if f in (Agg.STDDEV_SAMP, Agg.STDDEV_POP) else var


def _pair(agg: Aggregate, plan: QueryPlan, stats: np.ndarray) -> np.ndarray:
    cols = agg.columns
    n = _get(plan, stats, "pn", cols)
    sa, sb, sab = (_get(plan, stats, k, cols) for k in ("pa", "pb", "pab"))
    cross = sab - _safe_div(sa * sb, n)
    if agg.func is Agg.COVAR_POP:
        return np.where(n > 0, _safe_div(cross, n), np.nan)
    if agg.func is Agg.COVAR_SAMP:
        return np.where(n > 1, _safe_div(cross, n - 1), np.nan)
    saa, sbb = _get(plan, stats, "paa", cols), _get(plan, stats, "pbb", cols)
    m2a = saa - _safe_div(sa * sa, n)
    m2b = sbb - _safe_div(sb * sb, n)
    corr = _safe_div(cross, np.sqrt(np.maximum(m2a, 0) * np.maximum(m2b, 0)))
    return np.where(n > 1, np.clip(corr, -1.0, 1.0), np.nan)


def _from_hist(agg: Aggregate, hist: np.ndarray, threshold: float) -> np.ndarray:
    edges = np.asarray(agg.bins)
    if agg.func is Agg.HISTOGRAM:
        return hist
    k = hist.shape[-1]
    if agg.func in (Agg.MIN, Agg.MAX):
        mask = hist > threshold
        has = mask.any(axis=-1)
        if agg.func is Agg.MIN:
            return np.where(has, edges[np.argmax(mask, axis=-1)], np.nan)
        last = k - 1 - np.argmax(mask[..., ::-1], axis=-1)
        return np.where(has, edges[last + 1], np.nan)
    assert agg.q is not None
    counts = np.maximum(hist, 0.0)
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1]
    target = agg.q * total
    idx = np.minimum((cum < target[..., None]).sum(axis=-1), k - 1)
    below = (
        np.take_along_axis(cum, idx[..., None], axis=-1)[..., 0]
        - np.take_along_axis(counts, idx[..., None], axis=-1)[..., 0]
    )
    inbin = np.take_along_axis(counts, idx[..., None], axis=-1)[..., 0]
    frac = np.clip(_safe_div(target - below, inbin), 0.0, 1.0)
    frac = np.where(np.isnan(frac), 0.0, frac)
    value = edges[idx] + frac * (edges[idx + 1] - edges[idx])
    return np.where(total > 0, value, np.nan)


def linear_sd(agg: Aggregate, plan: QueryPlan, sd: np.ndarray) -> float | None:
    """Exact noise sd of a linear aggregate (COUNT, SUM, one histogram bin); else None."""
    cols = agg.columns
    if agg.func is Agg.COUNT:
        block = Block("count") if not cols else Block("n", cols)
        return float(sd[plan.offset(block)][0])
    if agg.func is Agg.SUM:
        center = plan.columns[cols[0]].center
        s_n = sd[plan.offset(Block("n", cols))][0]
        s_1 = sd[plan.offset(Block("s1", cols))][0]
        return float(np.sqrt(s_1**2 + (center * s_n) ** 2))
    if agg.func is Agg.HISTOGRAM:
        return float(sd[plan.offset(Block("hist", cols, agg.bins))][0])
    return None
