"""Drive the SecAgg state machines directly, with parties dropping at chosen steps."""

from __future__ import annotations

import numpy as np

from fedsilo.privacy.secagg.protocol import (
    PartyRound,
    RoundSetup,
    ServerRound,
    neighbour_graph,
    threshold_for,
)


def make_setup(
    n: int, length: int, *, degree: int | None = None, fraction: float = 0.5, bits: int = 32
) -> RoundSetup:
    names = [f"p{i:03d}" for i in range(n)]
    graph = neighbour_graph(names, n - 1 if degree is None else degree, seed=7)
    k = len(next(iter(graph.values())))
    return RoundSetup(
        tag=b"test|1|0",
        ids={p: i + 1 for i, p in enumerate(names)},
        neighbours=graph,
        threshold=threshold_for(k + 1, fraction),
        bits=bits,
        length=length,
    )


def run_round(
    setup: RoundSetup,
    inputs: dict[str, np.ndarray],
    *,
    drop_before_mask: frozenset[str] = frozenset(),
    drop_after_mask: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(ring sum, survivors, masked inputs) of one round."""
    parties = {p: PartyRound(p, setup) for p in setup.neighbours}
    server = ServerRound(setup)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    sent = {p: parties[p].share(k) for p, k in routed.items() if p not in drop_before_mask}
    inbox = server.route_shares(sent)
    masked = {p: parties[p].mask(inbox[p], inputs[p]) for p in inbox if p not in drop_after_mask}
    survivors, _ = server.collect(masked)
    reveals = {p: parties[p].unmask(*server.unmask_request(p)) for p in survivors}
    return server.unmask(reveals), survivors, masked
