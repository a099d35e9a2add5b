"""The parameters a party accepts: Bell et al. 2020 bounds, golden numbers from Google FCP."""

from __future__ import annotations

import pytest

from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.params import (
    ThreatModel,
    connected,
    min_degree,
    min_threshold,
    secagg_plus_parameters,
)
from fedsilo.privacy.secagg.protocol import default_degree, neighbour_graph

# google-parfait/federated-compute fcp/secagg/server/graph_parameter_finder_test.cc, the
# SEMI_MALICIOUS_SERVER rows (a server that may deviate) with n <= 100: (n, corruption rate,
# dropout rate) -> (degree, threshold over the k neighbours).
FCP_SEMI_MALICIOUS = [
    (100, 0.3, 0.3, 92, 62),
    (10, 0.05, 0.33, 8, 5),
    (100, 0.05, 0.33, 72, 39),
    (100, 0.33, 0.05, 42, 37),
]


@pytest.mark.parametrize(("n", "corrupt", "dropout", "degree", "threshold"), FCP_SEMI_MALICIOUS)
def test_secagg_plus_parameters_match_fcps_table(
    n: int, corrupt: float, dropout: float, degree: int, threshold: int
) -> None:
    k, t = secagg_plus_parameters(n, ThreatModel(dropout_rate=dropout, corruption_rate=corrupt))
    assert k == degree
    # FCP's threshold counts the k neighbours; ours also counts the party's own share, which
    # adds one when k + colluders is odd.
    assert t in (threshold, threshold + 1)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 11, 100])
def test_secagg_needs_a_strict_majority_without_colluders(n: int) -> None:
    assert min_threshold(n, n - 1, ThreatModel()) == n // 2 + 1


def test_colluders_raise_the_threshold_as_bonawitz_section_6() -> None:
    # t > (n + n_C) / 2: 10 parties, 3 may collude -> at least 7
    assert min_threshold(10, 9, ThreatModel(corruption_rate=0.3)) == 7


def test_a_lower_dropout_rate_accepts_a_sparser_graph() -> None:
    assert min_degree(100, ThreatModel(dropout_rate=0.05)) < min_degree(100, ThreatModel())
    assert min_degree(100, ThreatModel()) == 18
    assert default_degree(100) == 20  # 3 log2 n, already above the parties' minimum


def test_a_configured_degree_below_the_parties_minimum_is_raised_to_it() -> None:
    names = [f"p{i}" for i in range(10)]
    threat = ThreatModel()  # 10 parties, dropout 0.2: parties accept degrees from 4

    def degree(neighbours: int | None) -> int:
        plan = wire.plan_round(
            names,
            plus=True,
            neighbours=neighbours,
            threshold=0.5,
            bits=32,
            length=1,
            tag="t",
            graph_seed=0,
        )
        return min(len(v) for v in plan.neighbours.values())

    assert min_degree(10, threat) == 4
    assert degree(2) == 4
    assert wire.raised_degree(10, 2, threat) == (
        "privacy.secure_aggregation.neighbours = 2 is below the least degree parties accept "
        "for 10 parties with dropout_rate 0.2 and corruption_rate 0.0 (the survivors' graph "
        "could disconnect); using 4 neighbours"
    )
    assert degree(6) == 6  # at or above the minimum: as configured, nothing to say
    assert wire.raised_degree(10, 6, threat) is None
    assert wire.raised_degree(10, None, threat) is None
    # the parties' declared rates set the minimum: more dropouts, a denser graph
    assert (
        wire.plus_degree(10, 2, ThreatModel(dropout_rate=0.4))
        == min_degree(10, ThreatModel(dropout_rate=0.4))
        > 4
    )


def test_survivor_graph_connectivity() -> None:
    names = [f"p{i}" for i in range(12)]
    ring = neighbour_graph(names, 2, seed=0)  # a cycle
    assert connected(names, ring)
    order = [names[0]]
    while len(order) < 12:
        order.append(next(v for v in ring[order[-1]] if v not in order))
    cut = set(names) - {order[3], order[9]}  # two removed parties split a cycle in two
    assert not connected(cut, ring)
    assert connected(set(names) - {order[3]}, ring)


def test_rates_beyond_any_secure_graph_are_refused() -> None:
    with pytest.raises(ValueError, match=r"at most 0\.9"):
        ThreatModel(dropout_rate=0.6, corruption_rate=0.4)
