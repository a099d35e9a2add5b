"""Drive the SecAgg state machines directly, with parties dropping at chosen steps."""

from __future__ import annotations

import numpy as np

from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.identity import Identity, simulated_identities
from fedsilo.privacy.secagg.protocol import PartyRound, RoundSetup, ServerRound


def make_setup(
    n: int, length: int, *, degree: int | None = None, fraction: float = 0.5, bits: int = 32
) -> RoundSetup:
    """SecAgg (``degree=None``) or SecAgg+ over p000..; threshold as an honest coordinator sets it."""
    return wire.plan_round(
        [f"p{i:03d}" for i in range(n)],
        plus=degree is not None,
        neighbours=degree,
        threshold=fraction,
        bits=bits,
        length=length,
        tag="test|1|0",
        graph_seed=7,
    )


def make_parties(
    setup: RoundSetup, identities: dict[str, Identity] | None = None
) -> dict[str, PartyRound]:
    ids = identities or simulated_identities(setup.parties)
    return {p: PartyRound(ids[p], setup) for p in setup.parties}


def run_round(
    setup: RoundSetup,
    inputs: dict[str, np.ndarray],
    *,
    drop_before_mask: frozenset[str] = frozenset(),
    drop_after_mask: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(ring sum, survivors, masked inputs) of one honest round."""
    parties = make_parties(setup)
    server = ServerRound(setup)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    sent = {p: parties[p].share(k) for p, k in routed.items() if p not in drop_before_mask}
    inbox = server.route_shares(sent)
    masked = {p: parties[p].mask(inbox[p], inputs[p]) for p in inbox if p not in drop_after_mask}
    survivors, _ = server.collect(masked)
    confirmed = {p: parties[p].confirm(server.confirm_request()) for p in survivors}
    relayed = server.route_confirmations(confirmed)
    reveals = {p: parties[p].unmask(relayed[p]) for p in survivors}
    return server.unmask(reveals), survivors, masked
