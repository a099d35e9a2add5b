"""Sessions: a party's channel key lives for the job, its mask keys and masks for one round.

What a session saves (a neighbour's signature and the channel's X25519, once per job instead
of once per round) must not open anything: a channel key signed for another job, a replayed
ciphertext of an earlier round and a substituted mask key are each refused, and a neighbour
that restarts with a new channel key is checked afresh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pytest

from fedsilo.errors import ProtocolError
from fedsilo.privacy.secagg.identity import Identity, simulated_identities
from fedsilo.privacy.secagg.protocol import (
    PartyRound,
    RoundSetup,
    ServerRound,
    Session,
    SignedKeys,
)

from .helpers import make_setup

JOB = b"job-a"


def _round(
    setup: RoundSetup, sessions: Mapping[str, Session], inputs: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, SignedKeys], dict[str, dict[str, bytes]]]:
    """(ring sum, the key advertisements, the inbox of ciphertexts) of one honest round."""
    parties = {p: PartyRound(s.identity, setup, session=s) for p, s in sessions.items()}
    server = ServerRound(setup)
    adverts = {p: r.advertise() for p, r in parties.items()}
    routed = server.route_keys(adverts)
    inbox = server.route_shares({p: parties[p].share(k) for p, k in routed.items()})
    survivors, _ = server.collect({p: parties[p].mask(inbox[p], inputs[p]) for p in inbox})
    confirmed = {p: parties[p].confirm(server.confirm_request()) for p in survivors}
    relayed = server.route_confirmations(confirmed)
    total = server.unmask({p: parties[p].unmask(relayed[p]) for p in survivors})
    return total, adverts, inbox


def _setup(rnd: int, n: int = 12, degree: int | None = 6) -> RoundSetup:
    return dataclasses.replace(make_setup(n, 4, degree=degree), tag=f"job-a|{rnd}|0".encode())


def _inputs(setup: RoundSetup) -> dict[str, np.ndarray]:
    return {p: np.full(4, i + 1, dtype=np.uint32) for i, p in enumerate(setup.parties)}


class _CountingIdentity(Identity):
    """Counts the signatures it checks."""

    checked = 0

    def verify(self, signer: str, signature: bytes, message: bytes) -> None:
        type(self).checked += 1
        super().verify(signer, signature, message)


def test_one_session_checks_each_neighbour_once_and_every_round_sums_right() -> None:
    setup1, setup2 = _setup(1), _setup(2)
    ids = {
        p: _CountingIdentity(i.name, i.signing_key, i.roster, i.threat, parsed_roster=None)
        for p, i in simulated_identities(setup1.parties).items()
    }
    sessions = {p: Session(ids[p], JOB) for p in setup1.parties}
    edges = sum(len(v) for v in setup1.neighbours.values())

    _CountingIdentity.checked = 0
    total1, round1, _ = _round(setup1, sessions, _inputs(setup1))
    assert _CountingIdentity.checked == edges  # every party checked each neighbour once
    total2, round2, _ = _round(setup2, sessions, _inputs(setup2))
    assert _CountingIdentity.checked == edges  # round 2 checked nothing again

    expected = sum(range(1, 13))
    assert total1.tolist() == total2.tolist() == [expected] * 4
    # the channel key (and its signature) is the job's, the mask key is the round's
    for p in setup1.parties:
        (c1, s1, sig1), (c2, s2, sig2) = round1[p], round2[p]
        assert (c1, sig1) == (c2, sig2) == (sessions[p].c_public, sessions[p].signature)
        assert s1 != s2


def test_a_channel_key_signed_for_another_job_is_refused() -> None:
    setup = _setup(1, n=4, degree=None)
    ids = simulated_identities(setup.parties)
    sessions = {p: Session(ids[p], JOB) for p in setup.parties}
    parties = {p: PartyRound(ids[p], setup, session=sessions[p]) for p in setup.parties}
    server = ServerRound(setup)
    adverts = {p: r.advertise() for p, r in parties.items()}
    # the coordinator relays p001's genuine, signed channel key of another job
    other = Session(ids["p001"], b"job-b")
    adverts["p001"] = (other.c_public, adverts["p001"][1], other.signature)
    routed = server.route_keys(adverts)
    with pytest.raises(ProtocolError, match=r"not signed by 'p001'.*substituted"):
        parties["p000"].share(routed["p000"])


def test_a_ciphertext_of_an_earlier_round_does_not_decrypt_under_the_same_channel() -> None:
    setup1, setup2 = _setup(1, n=4, degree=None), _setup(2, n=4, degree=None)
    ids = simulated_identities(setup1.parties)
    sessions = {p: Session(ids[p], JOB) for p in setup1.parties}
    _, _, old_inbox = _round(setup1, sessions, _inputs(setup1))

    parties = {p: PartyRound(ids[p], setup2, session=sessions[p]) for p in setup2.parties}
    server = ServerRound(setup2)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    inbox = server.route_shares({p: parties[p].share(k) for p, k in routed.items()})
    inbox["p000"]["p001"] = old_inbox["p000"]["p001"]  # round 1's share from p001, replayed
    with pytest.raises(ProtocolError, match="failed to decrypt"):
        parties["p000"].mask(inbox["p000"], np.zeros(4, dtype=np.uint32))


def test_a_restarted_neighbour_with_a_new_channel_key_is_checked_and_accepted() -> None:
    setup1, setup2 = _setup(1), _setup(2)
    ids = simulated_identities(setup1.parties)
    sessions = {p: Session(ids[p], JOB) for p in setup1.parties}
    _round(setup1, sessions, _inputs(setup1))
    before = sessions["p003"].c_public
    sessions["p003"] = Session(ids["p003"], JOB)  # p003's process restarted mid-job
    assert sessions["p003"].c_public != before

    total, _, _ = _round(setup2, sessions, _inputs(setup2))

    assert total.tolist() == [sum(range(1, 13))] * 4


def test_a_session_belongs_to_one_identity() -> None:
    setup = _setup(1, n=4, degree=None)
    ids = simulated_identities(setup.parties)
    with pytest.raises(ValueError, match="same identity"):
        PartyRound(ids["p000"], setup, session=Session(ids["p001"], JOB))
