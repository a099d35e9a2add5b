"""Which secure-aggregation parameters a party accepts: thresholds and SecAgg+ degrees.

A party never takes the threshold or the neighbourhood size on the coordinator's word. It
computes the least it accepts from the group size it was told at setup and its **own**
declared rates (:class:`ThreatModel`: the fraction of parties that may drop out and the
fraction that may collude with the coordinator), and refuses a setup below it.

The threat: a coordinator that deviates (tells parties different survivor sets, lowers the
threshold, substitutes keys) and up to ``corruption_rate`` of the parties colluding with it.
An honest party reveals, for each neighbour, one kind of share only (the self-mask seed if the
neighbour survived, the mask key if it dropped). The coordinator needs ``t`` shares of each
kind of one target's secrets to read its input; with ``c`` colluders among the target's
``g`` share holders (who reveal both kinds), that takes ``2 t - c`` holders, so a threshold
``t > (g + c) / 2`` makes it impossible (Bonawitz et al. 2017, Sec. 6: ``t > (n + n_C) / 2``).

* **SecAgg** (complete graph, ``g = n``): ``c = ceil(corruption_rate * n)``, so the least
  threshold is ``floor((n + c) / 2) + 1``, a strict majority when no party colludes.
* **SecAgg+** (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
  Overhead", Sec. 3-4; each party shares among its ``k`` neighbours and itself): ``c`` is the
  number of colluders among ``k`` random neighbours that is exceeded with probability below
  ``2^-41 / n`` (a hypergeometric tail, exact integer arithmetic), and the degree ``k`` must
  keep the graph of honest survivors connected with probability ``1 - 2^-41`` when
  ``(corruption_rate + dropout_rate) n`` parties are removed (a disconnected survivor graph
  would give the coordinator one sum per component): any cut of a Harary graph needs ``k/2``
  consecutive removed parties in two places, bounded by a union bound over the
  ``n (n - k - 1) / 2`` gap pairs. These are the bounds of Google FCP's
  ``graph_parameter_finder.cc`` (security 2^-40, correctness 2^-20);
  :func:`secagg_plus_parameters` reproduces its published table (tests/privacy/secagg).

Every party also checks, on the survivor set it signs, that the survivors' graph is connected
(:func:`connected`); the degree bound only makes an honest round unlikely to fail that check.

>>> min_threshold(10, 9, ThreatModel())  # SecAgg, 10 parties: a strict majority
6
>>> min_threshold(100, 20, ThreatModel(dropout_rate=0.2))  # SecAgg+, k = 20
11
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

SECURITY_BITS = 40  # statistical security of the graph bounds
CORRECTNESS_BITS = 20  # failure probability of an honest round (coordinator's choice only)
_EPS = 1e-14  # as FCP: keeps rounding of rate * n from erring in the insecure direction


@dataclass(frozen=True)
class ThreatModel:
    """What a party declares about the other parties of its rounds (its own config).

    ``dropout_rate``: the fraction of a round's parties that may drop out; ``corruption_rate``:
    the fraction that may collude with the coordinator (0 for honest-but-curious parties).
    """

    dropout_rate: float = 0.2
    corruption_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dropout_rate", "corruption_rate"):
            value = getattr(self, name)
            if not (0.0 <= value < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.dropout_rate + self.corruption_rate > 0.9:
            raise ValueError(
                "dropout_rate + corruption_rate must be at most 0.9 for any secure graph "
                f"to exist, got {self.dropout_rate} + {self.corruption_rate}"
            )

    def corrupt(self, n: int) -> int:
        return math.floor((self.corruption_rate + _EPS) * n)

    def bad(self, n: int) -> int:
        return self.corrupt(n) + math.floor((self.dropout_rate + _EPS) * n)


def min_threshold(n: int, degree: int, threat: ThreatModel) -> int:
    """The least Shamir threshold a party accepts: ``n`` parties, ``degree`` neighbours each.

    ``degree >= n - 1`` is SecAgg's complete graph. The share group is the degree plus the
    party itself; the result may exceed the group size (then no threshold is safe).
    """
    group = min(degree, n - 1) + 1
    if degree >= n - 1:
        colluders = math.ceil(threat.corruption_rate * n - _EPS)
    else:
        colluders = _corrupt_neighbours(n, threat.corrupt(n), degree)
    return max(2, (group + colluders) // 2 + 1)


def min_degree(n: int, threat: ThreatModel) -> int:
    """The least SecAgg+ degree (even) whose survivor graph stays connected w.h.p."""
    for k in range(2, n - 1, 2):
        if disconnection_bound_ok(n, k, threat.bad(n)):
            return k
    return n - 1


def disconnection_bound_ok(n: int, k: int, bad: int) -> bool:
    """P[removing ``bad`` of ``n`` parties disconnects a random Harary graph] < 2^-41.

    The union bound ``n (n - k - 1) / 2 * C(bad, k) / C(n, k)``, compared exactly.
    """
    if k > bad:
        return True
    bound: int = n * (n - k - 1) * math.comb(bad, k) * 2 ** (SECURITY_BITS + 1)
    return bound < 2 * math.comb(n, k)


def secagg_plus_parameters(n: int, threat: ThreatModel) -> tuple[int, int]:
    """(degree, threshold) for SecAgg+ over ``n`` parties: secure and, w.h.p., live.

    The coordinator's choice: the smallest even degree that passes the connectivity bound and
    leaves a threshold both safe (:func:`min_threshold`) and reachable, i.e. each party keeps
    at least that many surviving neighbours with probability ``1 - 2^-20 / n``.
    """
    survivors = math.ceil((1 - threat.dropout_rate - _EPS) * n)
    for k in range(2, n - 1, 2):
        if not disconnection_bound_ok(n, k, threat.bad(n)):
            continue
        colluders = _corrupt_neighbours(n, threat.corrupt(n), k)
        t_fcp = max(2, math.ceil((colluders + k - 1.25) / 2) + 1)  # FCP, k shareholders
        reachable = _lower_quantile(n, survivors, k, 2.0**-CORRECTNESS_BITS / n)
        if reachable >= t_fcp:
            return k, max(t_fcp, min_threshold(n, k, threat))
    return n - 1, min_threshold(n, n - 1, threat)


@lru_cache(maxsize=256)
def _corrupt_neighbours(n: int, corrupt: int, k: int) -> int:
    """Least x with P[more than x colluders among k random others] < 2^-41 / n."""
    total = math.comb(n, k)
    tail = 0
    # walk down from the top: tail = P[X > x] * C(n, k)
    for x in range(min(k, corrupt), -1, -1):
        tail_above = tail
        if tail_above * n * 2 ** (SECURITY_BITS + 1) >= total:
            return x + 1
        tail += _hyper(n, corrupt, k, x)
    return 0


@lru_cache(maxsize=256)
def _lower_quantile(n: int, marked: int, k: int, q: float) -> int:
    """Least x with P[X <= x] >= q, X ~ Hypergeometric(n, marked, k)."""
    total = math.comb(n, k)
    acc = 0
    for x in range(0, k + 1):
        acc += _hyper(n, marked, k, x)
        if acc >= q * total:
            return x
    return k


def _hyper(n: int, marked: int, k: int, x: int) -> int:
    """C(n, k) * P[X = x] for X ~ Hypergeometric(n, marked, k)."""
    if x < 0 or x > marked or k - x > n - marked:
        return 0
    return math.comb(marked, x) * math.comb(n - marked, k - x)


def connected(nodes: Collection[str], graph: Mapping[str, Sequence[str]]) -> bool:
    """Whether ``graph`` restricted to ``nodes`` is connected (breadth-first search)."""
    todo = set(nodes)
    if not todo:
        return False
    frontier = [todo.pop()]
    while frontier:
        nxt = []
        for u in frontier:
            for v in graph.get(u, ()):
                if v in todo:
                    todo.discard(v)
                    nxt.append(v)
        frontier = nxt
    return not todo
