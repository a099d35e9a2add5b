"""A deviating coordinator, scripted step by step, against the real party code.

Every attack of issue #11 (split survivor lists, a lowered threshold, substituted keys) is
played through real :class:`~fedsilo.runtime.party.PartyAgent` objects over the in-process
transport (real training, real Ed25519/X25519/AES, the real wire format). Each time the
parties refuse with a reason, no party reveals a share the attack needs, and the
coordinator's own unmasking aborts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedsilo.config import parse_job
from fedsilo.errors import RoundFailedError
from fedsilo.models import build_model, flatten, get_params
from fedsilo.privacy.secagg import keys, wire
from fedsilo.privacy.secagg.protocol import (
    RoundSetup,
    ServerRound,
    SignedKeys,
    session_message,
)
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import local_train_config
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.setup import COORDINATOR, prepare_parties
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import load_simulated_data, simulated_party_identities
from tests.conftest import small_job


class ScriptedCoordinator:
    """Real parties behind an in-process transport; the test decides what each one is sent."""

    def __init__(self, n: int, variant: str = "secagg") -> None:
        privacy = {"secure_aggregation": {"enabled": True, "variant": variant}}
        self.job = parse_job(
            small_job(privacy=privacy, rounds=1, data={"num_parties": n}), source="test"
        )
        data = load_simulated_data(self.job)
        ids = simulated_party_identities(self.job, data.parties)
        agents = {p: PartyAgent(p, d, identity=ids[p]) for p, d in data.parties.items()}
        self.agents = agents
        self.transport = InProcessTransport(agents)
        self.setup = prepare_parties(self.transport, self.job)
        self.parties = sorted(self.setup.parties)
        self.params = get_params(build_model(self.setup.model_spec, seed=0))
        self.length = flatten(self.params).size + 3
        self.training = dataclasses.asdict(local_train_config(self.job.training))

    def plan(self, *, threshold: int | None = None, degree: int | None = None) -> RoundSetup:
        plus = self.job.privacy.secure_aggregation.variant.value == "secagg+"
        rs = wire.plan_round(
            self.parties,
            plus=plus,
            neighbours=None,
            threshold=0.5,
            bits=32,
            length=self.length,
            tag=f"{self.job.name}|1|0",
            graph_seed=3,
        )
        if threshold is None and degree is None:
            return rs
        return dataclasses.replace(
            rs,
            threshold=rs.threshold if threshold is None else threshold,
            degree=rs.degree if degree is None else degree,
        )

    def send(
        self,
        kind: TaskKind,
        bodies: Mapping[str, dict[str, Any]],
        arrays: Any = None,
        attempt: int = 0,
    ) -> dict[str, Message]:
        tasks = {
            p: Message(kind, self.job.name, 1, COORDINATOR, {"attempt": attempt} | b, arrays or {})
            for p, b in bodies.items()
        }
        gathered = self.transport.exchange(tasks, timeout_s=60)
        assert not gathered.failures
        return dict(gathered.replies)

    def keys(self, rs: RoundSetup, attempt: int = 0) -> dict[str, Message]:
        bodies = {p: wire.setup_body(rs) for p in rs.parties}
        return self.send(TaskKind.SECAGG_KEYS, bodies, attempt=attempt)

    def honest_until_masked(
        self,
        rs: RoundSetup,
        tamper_keys: Callable[[dict[str, dict[str, SignedKeys]]], None] = (lambda routed: None),
        tamper_inbox: Callable[[dict[str, dict[str, bytes]]], None] = (lambda inbox: None),
    ) -> tuple[ServerRound, dict[str, Message]]:
        """Keys, shares and fit as an honest coordinator would send them (the routed keys and
        the relayed ciphertexts tamperable).

        Returns the server and, if some party refused, every reply of the step (shares or
        fit) where it did; ``{}`` when all masked their inputs.
        """
        server = ServerRound(rs)
        advertised = {p: wire.parse_keys_reply(r.body) for p, r in self.keys(rs).items()}
        routed = server.route_keys(advertised)
        tamper_keys(routed)
        replies = self.send(
            TaskKind.SECAGG_SHARES, {p: wire.keys_body(ks) for p, ks in routed.items()}
        )
        if _errors(replies):
            return server, replies
        inbox = server.route_shares(
            {p: wire.parse_shares_reply(r.body) for p, r in replies.items()}
        )
        tamper_inbox(inbox)
        bodies = {p: self._fit_body(rs, p, box) for p, box in inbox.items()}
        fitted = self.send(TaskKind.FIT, bodies, self.params)
        if _errors(fitted):
            return server, fitted
        server.collect({p: r.arrays["masked"] for p, r in fitted.items()})
        return server, {}

    def _fit_body(self, rs: RoundSetup, p: str, box: Mapping[str, bytes]) -> dict[str, Any]:
        sa = {
            "clip_range": 4.0,
            "bits": 32,
            "max_parties": len(rs.parties),
            "quant_seed": rs.ids[p],
            "shares": wire.encode_ciphertexts(box),
        }
        private = {"weight_scale": 1000.0, "secagg": sa}
        return {"training": self.training, "seed": rs.ids[p], "private": private}


def _errors(replies: Mapping[str, Message]) -> dict[str, str]:
    return {p: str(r.error) for p, r in replies.items() if r.error is not None}


# ------------------------------------------------------------------ threshold downgrade


@pytest.mark.parametrize(("n", "variant"), [(4, "secagg"), (6, "secagg"), (20, "secagg+")])
def test_a_threshold_of_two_is_refused_by_every_party(n: int, variant: str) -> None:
    coordinator = ScriptedCoordinator(n, variant)
    rs = coordinator.plan(threshold=2)
    assert variant == "secagg" or not rs.complete  # SecAgg+ really is a sparse graph here

    replies = coordinator.keys(rs)

    errors = _errors(replies)
    assert sorted(errors) == coordinator.parties
    for p, text in errors.items():
        assert f"party '{p}' refuses" in text and "threshold 2" in text
        assert "Raise privacy.secure_aggregation.threshold" in text
    # no party kept a round to go on with: the share step that would follow is refused too
    shares = coordinator.send(TaskKind.SECAGG_SHARES, {p: {"keys": {}} for p in rs.parties})
    for p, text in _errors(shares).items():
        assert f"party '{p}': no secure-aggregation state for round 1 attempt 0" in text
    assert sorted(_errors(shares)) == coordinator.parties
    with pytest.raises(RoundFailedError, match="0 parties sent keys"):
        ServerRound(rs).route_keys({})  # nothing was advertised: the coordinator cannot go on


def test_the_honest_threshold_is_accepted_and_a_lower_degree_is_refused() -> None:
    coordinator = ScriptedCoordinator(20, "secagg+")
    honest = coordinator.plan()
    assert not _errors(coordinator.keys(honest))
    low = coordinator.plan(degree=2, threshold=2)
    tag = f"{coordinator.job.name}|1|1".encode()
    errors = _errors(coordinator.keys(dataclasses.replace(low, tag=tag), attempt=1))
    assert len(errors) == 20
    assert all("survivors' graph could disconnect" in e for e in errors.values())


# ------------------------------------------------------------------ key substitution


def _substitute(
    target: str, *, scope: bytes, towards_target: bool, sign_with_own_key: bool
) -> Callable[[dict[str, dict[str, SignedKeys]]], None]:
    """Replace keys with the coordinator's own X25519 keys, for or towards ``target``
    (signed, with ``sign_with_own_key``, by the coordinator for the job's session ``scope``)."""
    rogue = Ed25519PrivateKey.generate()

    def tamper(routed: dict[str, dict[str, SignedKeys]]) -> None:
        c, s = keys.public_bytes(keys.new_private_key()), keys.public_bytes(keys.new_private_key())
        for receiver, box in routed.items():
            for owner, (_, _, sig) in list(box.items()):
                if (receiver == target) if towards_target else (owner == target):
                    if sign_with_own_key:
                        sig = keys.sign(rogue, session_message(scope, owner, c))
                    box[owner] = (c, s, sig)

    return tamper


@pytest.mark.parametrize("towards_target", [True, False], ids=["to-target", "as-target"])
@pytest.mark.parametrize("sign_with_own_key", [False, True], ids=["replayed-sig", "own-sig"])
def test_substituted_keys_are_refused_and_no_share_is_encrypted_to_them(
    towards_target: bool, sign_with_own_key: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    encrypted: list[tuple[str, str]] = []  # (sender, recipient) of every share encrypted
    encrypt = keys.encrypt

    def spy(cipher: Any, plaintext: bytes, aad: bytes) -> bytes:
        _, sender, recipient = aad.decode().rsplit("|", 2)
        encrypted.append((sender, recipient))
        return encrypt(cipher, plaintext, aad)

    monkeypatch.setattr(keys, "encrypt", spy)
    coordinator = ScriptedCoordinator(4)
    rs = coordinator.plan()
    target = "party-2"
    tamper = _substitute(
        target,
        scope=coordinator.job.name.encode(),
        towards_target=towards_target,
        sign_with_own_key=sign_with_own_key,
    )

    _, refusals = coordinator.honest_until_masked(rs, tamper)

    assert all(r.kind is TaskKind.SECAGG_SHARES for r in refusals.values())
    victims = [target] if towards_target else [p for p in coordinator.parties if p != target]
    errors = _errors(refusals)
    assert sorted(errors) == sorted(victims)
    for text in errors.values():
        assert "not signed by" in text and "substituted" in text
    # a victim refuses before it encrypts a single share (to the rogue key or anyone); the
    # parties that were shown genuine keys did encrypt theirs
    senders = {sender for sender, _ in encrypted}
    assert senders == set(coordinator.parties) - set(victims)


@pytest.mark.parametrize("towards_target", [True, False], ids=["to-target", "as-target"])
def test_a_substituted_mask_key_is_refused_before_any_input_is_masked(
    towards_target: bool,
) -> None:
    """The channel keys and their signatures are genuine; only the per-round mask key ``s``
    is the coordinator's own. Each victim finds the real ``s`` inside the neighbour's
    encrypted share (which the coordinator cannot forge) and refuses to mask."""
    coordinator = ScriptedCoordinator(4)
    rs = coordinator.plan()
    target = "party-2"
    rogue_s = keys.public_bytes(keys.new_private_key())

    def tamper(routed: dict[str, dict[str, SignedKeys]]) -> None:
        for receiver, box in routed.items():
            for owner, (c, _, sig) in list(box.items()):
                if (receiver == target) if towards_target else (owner == target):
                    box[owner] = (c, rogue_s, sig)

    _, fitted = coordinator.honest_until_masked(rs, tamper)

    # the channel keys verify, so every share went out: the refusals come at the fit step
    assert fitted and all(r.kind is TaskKind.FIT for r in fitted.values())

    victims = [target] if towards_target else [p for p in coordinator.parties if p != target]
    errors = _errors(fitted)
    assert sorted(errors) == sorted(victims)
    for victim, text in errors.items():
        assert f"party '{victim}' refuses" in text
        assert "mask key relayed as" in text and "substituted" in text
        assert "masked" not in fitted[victim].arrays  # no input masked with the rogue key
    for honest in set(coordinator.parties) - set(victims):
        assert "masked" in fitted[honest].arrays


def test_a_forged_share_is_refused_before_the_party_trains() -> None:
    """A coordinator that corrupts one encrypted share relayed to a party in the fit task: the
    party checks its neighbours' shares before it trains, so it refuses without training (so,
    with record-level DP, without charging the round to its ledger) and sends nothing."""
    coordinator = ScriptedCoordinator(4)
    trained: list[str] = []
    for name, agent in coordinator.agents.items():
        inner = agent._trainer

        def counting(*args: Any, _name: str = name, _inner: Any = inner, **kw: Any) -> Any:
            trained.append(_name)
            return _inner(*args, **kw)

        agent._trainer = counting
    victim = "party-2"

    def forge(inbox: dict[str, dict[str, bytes]]) -> None:
        sender = sorted(inbox[victim])[0]
        blob = bytearray(inbox[victim][sender])
        blob[-1] ^= 1  # the AES-GCM tag no longer verifies
        inbox[victim][sender] = bytes(blob)

    _, fitted = coordinator.honest_until_masked(coordinator.plan(), tamper_inbox=forge)
    errors = _errors(fitted)
    assert sorted(errors) == [victim]
    assert "an encrypted share failed to decrypt" in errors[victim]
    assert "masked" not in fitted[victim].arrays
    assert sorted(trained) == [p for p in coordinator.parties if p != victim]


def test_without_substitution_the_same_round_completes() -> None:
    coordinator = ScriptedCoordinator(4)
    rs = coordinator.plan()
    server, refusals = coordinator.honest_until_masked(rs)
    assert not refusals
    confirmed = coordinator.send(
        TaskKind.SECAGG_CONFIRM, {p: wire.confirm_body(server) for p in rs.parties}
    )
    relayed = server.route_confirmations(
        {p: wire.parse_confirm_reply(r.body) for p, r in confirmed.items()}
    )
    reveals = coordinator.send(
        TaskKind.SECAGG_UNMASK, {p: wire.unmask_body(cs) for p, cs in relayed.items()}
    )
    total = server.unmask({p: wire.parse_reveal_reply(r.body) for p, r in reveals.items()})
    assert total.shape == (coordinator.length,)
    # a second unmask request for the same masked inputs reveals nothing more
    again = coordinator.send(
        TaskKind.SECAGG_UNMASK, {p: wire.unmask_body(cs) for p, cs in relayed.items()}
    )
    assert all("no secure-aggregation state" in e for e in _errors(again).values())
    assert len(_errors(again)) == 4
    # nor can the same round attempt be keyed again
    assert len(_errors(coordinator.keys(rs))) == 4


# ------------------------------------------------------------------ withheld shares


@pytest.mark.parametrize(("n", "variant"), [(5, "secagg"), (20, "secagg+")])
def test_a_withheld_share_is_caught_in_the_consistency_round(n: int, variant: str) -> None:
    """The coordinator keeps one ciphertext from ``v``: ``u`` masked with ``v`` but not
    ``v`` with ``u``, both survive. Each learns it from the other's authenticated bit and
    refuses to reveal anything; forging the bit breaks the MAC."""
    coordinator = ScriptedCoordinator(n, variant)
    rs = coordinator.plan()
    u = "party-1"
    v = sorted(rs.neighbours[u])[0]

    def withhold(inbox: dict[str, dict[str, bytes]]) -> None:
        del inbox[v][u]  # v never gets u's shares, so v does not mask with u

    server, refusals = coordinator.honest_until_masked(rs, tamper_inbox=withhold)
    assert not refusals
    confirmed = coordinator.send(
        TaskKind.SECAGG_CONFIRM, {p: wire.confirm_body(server) for p in rs.parties}
    )
    assert not _errors(confirmed)
    confirmations = {p: wire.parse_confirm_reply(r.body) for p, r in confirmed.items()}
    assert u in confirmations[v][1] and u not in confirmations[v][0]  # v confirms to u, unmasked
    relayed = server.route_confirmations(confirmations)
    honest = coordinator.send(
        TaskKind.SECAGG_UNMASK, {p: wire.unmask_body(cs) for p, cs in relayed.items()}
    )
    errors = _errors(honest)
    assert sorted(errors) == sorted([u, v])
    for text in errors.values():
        assert "was not mutual (shares were withheld)" in text
    reveals = {p: wire.parse_reveal_reply(r.body) for p, r in honest.items() if r.error is None}
    # no one dropped: the others reveal self-mask shares only, never a mask key
    assert reveals and all(kind == "b" for r in reveals.values() for kind, _, _ in r.values())


def test_a_forged_mutual_masking_bit_fails_the_mac() -> None:
    coordinator = ScriptedCoordinator(5)
    rs = coordinator.plan()
    u = "party-1"
    v = sorted(rs.neighbours[u])[0]

    def withhold(inbox: dict[str, dict[str, bytes]]) -> None:
        del inbox[v][u]

    server, _ = coordinator.honest_until_masked(rs, tamper_inbox=withhold)
    confirmed = coordinator.send(
        TaskKind.SECAGG_CONFIRM, {p: wire.confirm_body(server) for p in rs.parties}
    )
    relayed = server.route_confirmations(
        {p: wire.parse_confirm_reply(r.body) for p, r in confirmed.items()}
    )
    relayed[u][v] = (True, relayed[u][v][1])  # tell u that v did mask with it
    replies = coordinator.send(TaskKind.SECAGG_UNMASK, {u: wire.unmask_body(relayed[u])})
    assert "'" + v + "''s confirmation does not verify" in str(replies[u].error)


# ------------------------------------------------------------------ survivor-list split


@pytest.mark.parametrize(("n", "variant"), [(4, "secagg"), (6, "secagg"), (20, "secagg+")])
@pytest.mark.parametrize("relay", ["all", "matching"])
def test_a_split_survivor_list_is_refused_and_nothing_unmasks(
    n: int, variant: str, relay: str
) -> None:
    """Half the parties are told the target survived, the others that it dropped."""
    coordinator = ScriptedCoordinator(n, variant)
    rs = coordinator.plan()
    server, refusals = coordinator.honest_until_masked(rs)
    assert not refusals
    target = "party-1"
    holders = sorted(rs.neighbours[target])
    told_dropped = set(holders[: len(holders) // 2 + 1])  # at least half of its shareholders
    everyone = list(rs.parties)
    without = [p for p in everyone if p != target]
    views = {p: (without if p in told_dropped else everyone) for p in everyone}
    confirmed = coordinator.send(
        TaskKind.SECAGG_CONFIRM, {p: {"survivors": v} for p, v in views.items()}
    )
    assert not _errors(confirmed)  # each view alone is plausible: connected, has the signer
    confirmations = {p: wire.parse_confirm_reply(r.body) for p, r in confirmed.items()}

    # The coordinator relays either every confirmation, or only those on the party's own view.
    bodies = {}
    for p in everyone:
        # v's confirmation to p, where v made one for p (not if v was told p dropped)
        group = [v for v in rs.neighbours[p] if v in views[p] and p in confirmations[v][1]]
        if relay == "matching":
            group = [v for v in group if views[v] == views[p]]
        bodies[p] = wire.unmask_body(
            {v: (p in confirmations[v][0], confirmations[v][1][p]) for v in group}
        )
    replies = coordinator.send(TaskKind.SECAGG_UNMASK, bodies)

    errors = _errors(replies)
    if variant == "secagg":
        assert sorted(errors) == sorted(everyone)  # every party refuses to reveal anything
    # every party that saw the split (its neighbours were shown another set) refuses
    saw_split = {p for p in everyone if any(views[v] != views[p] for v in rs.neighbours[p])}
    assert saw_split and saw_split <= set(errors)
    for text in errors.values():
        assert "refuses the secure-aggregation round" in text
        assert "different survivor sets" in text or "consistency round is incomplete" in text
    reveals = {p: wire.parse_reveal_reply(r.body) for p, r in replies.items() if r.error is None}
    kinds = [reveal[target][0] for reveal in reveals.values() if target in reveal]
    assert min(kinds.count("b"), kinds.count("s")) < rs.threshold  # never both of the target
    with pytest.raises(RoundFailedError, match=r"fewer than .* shares came back"):
        server.unmask(reveals)


@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        (lambda private: private["secagg"].update(bits=0), "private.secagg.bits"),
        (lambda private: private["secagg"].update(mask_seed=7), "private.secagg.mask_seed"),
        (lambda private: private.update(weight_scale=-1.0), "private.weight_scale"),
        (
            lambda private: private.update(
                client_dp={"clip_norm": 1.0, "noise_std": -0.5, "bit_noise_std": 0.0}
            ),
            "private.client_dp.noise_std",
        ),
    ],
)
def test_a_malformed_private_fit_task_is_refused_naming_the_field(
    tamper: Callable[[dict[str, Any]], None], field: str
) -> None:
    coordinator = ScriptedCoordinator(3)
    rs = coordinator.plan()
    server = ServerRound(rs)
    advertised = {p: wire.parse_keys_reply(r.body) for p, r in coordinator.keys(rs).items()}
    routed = server.route_keys(advertised)
    replies = coordinator.send(
        TaskKind.SECAGG_SHARES, {p: wire.keys_body(ks) for p, ks in routed.items()}
    )
    inbox = server.route_shares({p: wire.parse_shares_reply(r.body) for p, r in replies.items()})
    bodies = {p: coordinator._fit_body(rs, p, box) for p, box in inbox.items()}
    victim = coordinator.parties[0]
    tamper(bodies[victim]["private"])
    fitted = coordinator.send(TaskKind.FIT, {victim: bodies[victim]}, coordinator.params)
    error = fitted[victim].error
    assert error is not None and f"party '{victim}' round 1: fit field '{field}'" in error
    assert "masked" not in fitted[victim].arrays  # nothing masked left the party


def test_a_secure_aggregation_step_without_its_attempt_is_refused_naming_the_field() -> None:
    coordinator = ScriptedCoordinator(3)
    rs = coordinator.plan()
    coordinator.keys(rs)
    task = Message(TaskKind.SECAGG_SHARES, coordinator.job.name, 1, COORDINATOR, {"keys": {}})
    party = coordinator.parties[0]
    reply = coordinator.transport.exchange({party: task}, timeout_s=60).replies[party]
    assert reply.error is not None
    assert f"party '{party}' round 1: secagg-shares field 'attempt' is invalid" in reply.error
