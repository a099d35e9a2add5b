"""No differencing: the coordinator never holds two unmasked sums that differ by one update.

Issue #11 (Why, point 1): SecAgg, 5 parties, ``selection.min_parties = 5``, one FIT reply lost
in round 1. A coordinator that unmasks the 4-party sum, then rejects the round and retries with
the same fit seeds, unmasks a 5-party sum whose difference with the first is the lost party's
update. Every test here spies on the real state machines: each sum the coordinator unmasks
(``ServerRound.unmask``) and each party's masked input (``PartyRound.apply``), then looks for
a pair of sums whose difference decodes to one party's input.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import fedsilo
from fedsilo.config import parse_job
from fedsilo.errors import RoundFailedError
from fedsilo.privacy.accounting import GaussianSpend, epsilon
from fedsilo.privacy.secagg.protocol import PartyRound, ServerRound
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime import collectors, coordinator
from fedsilo.runtime.collectors import Attempt, Summed, WeightedMean
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.secure_sum import SecureSum
from fedsilo.runtime.seeds import fit_seed
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.simulation import load_simulated_data, simulated_agents, simulated_party_identities
from tests.conftest import small_job
from tests.privacy.secagg.helpers import make_setup, run_round

LOST = "party-3"
PARTIES = [f"party-{i}" for i in range(1, 6)]
CLIP, BITS = 4.0, 32


@dataclass
class Spy:
    """What the coordinator unmasked, and what each party masked, per protocol tag."""

    sums: list[tuple[bytes, list[str], np.ndarray]] = field(default_factory=list)
    inputs: dict[tuple[bytes, str], np.ndarray] = field(default_factory=dict)
    size: dict[bytes, int] = field(default_factory=dict)  # parties selected per tag

    def decoded_sums(self) -> list[np.ndarray]:
        return [
            Quantizer(CLIP, BITS, self.size[tag]).decode_sum(total, len(survivors))
            for tag, survivors, total in self.sums
        ]

    def differencing_pairs(self, tolerance: float = 1e-3) -> list[tuple[str, float]]:
        """(party, max error) for every pair of sums whose difference is one party's input."""
        found = []
        for a, b in itertools.permutations(self.decoded_sums(), 2):
            for (tag, party), x in self.inputs.items():
                one = Quantizer(CLIP, BITS, self.size[tag]).decode_sum(x.astype(np.float64), 1)
                err = float(np.abs((a - b) - one).max())
                if err < tolerance:
                    found.append((party, err))
        return found


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    seen = Spy()
    unmask, apply = ServerRound.unmask, PartyRound.apply

    def spy_unmask(self: ServerRound, reveals: Mapping[str, Any]) -> np.ndarray:
        total = unmask(self, reveals)
        seen.sums.append((self.setup.tag, sorted(self._masked), total.copy()))
        return total

    def spy_apply(self: PartyRound, x: np.ndarray, **kw: bool) -> np.ndarray:
        seen.inputs[(self.setup.tag, self.name)] = x.copy()
        seen.size[self.setup.tag] = len(self.setup.ids)  # complete graph: every party
        return apply(self, x, **kw)

    monkeypatch.setattr(ServerRound, "unmask", spy_unmask)
    monkeypatch.setattr(PartyRound, "apply", spy_apply)  # mask() is receive() then apply()
    yield seen


class LoseOnce:
    """In-process transport that loses ``LOST``'s first FIT reply of round 1 (it trained)."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.lost = False
        self.log: list[tuple[int, int, TaskKind, list[str]]] = []
        self.fit_seeds: dict[tuple[int, str], set[int]] = {}

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        first = next(iter(tasks.values()))
        attempt = int(first.body.get("attempt", -1))
        self.log.append((first.round, attempt, first.kind, sorted(tasks)))
        if first.kind is TaskKind.FIT:
            for p, t in tasks.items():
                self.fit_seeds.setdefault((t.round, p), set()).add(int(t.body["seed"]))
        out = self.inner.exchange(tasks, timeout_s=timeout_s)
        if first.kind is TaskKind.FIT and first.round == 1 and not self.lost and LOST in tasks:
            self.lost = True
            replies = {p: r for p, r in out.replies.items() if p != LOST}
            return Gathered(replies, {**out.failures, LOST: "timed out (test)"})
        return out

    def unmask_requests(self, rnd: int) -> list[int]:
        return [a for r, a, kind, _ in self.log if r == rnd and kind is TaskKind.SECAGG_UNMASK]


def _job(client_dp: bool = False, rounds: int = 2) -> fedsilo.JobConfig:
    privacy: dict[str, Any] = {
        "secure_aggregation": {"enabled": True, "clip_range": CLIP, "bits": BITS}
    }
    if client_dp:
        privacy |= {
            "delta": 1e-5,
            "client_dp": {
                "enabled": True,
                "noise": "distributed",
                "noise_multiplier": 0.8,
                "clip_norm": 0.5,
            },
        }
    raw = small_job(
        rounds=rounds,
        data={"num_parties": 5, "partition": "iid"},
        selection={"min_parties": 5, "max_round_retries": 2},
        privacy=privacy,
    )
    return parse_job(raw, source="test")


def _agents(job: fedsilo.JobConfig) -> dict[str, PartyAgent]:
    """The simulated parties, each with the job's stand-in for its own privacy config."""
    sim = load_simulated_data(job)
    return simulated_agents(job, sim, simulated_party_identities(job, sim.parties), None)


def test_the_check_finds_a_difference_when_the_same_inputs_are_summed_twice(spy: Spy) -> None:
    """The detector itself: two rounds over the same inputs, one party missing from one."""
    setup = make_setup(5, 6, bits=BITS)
    quant = Quantizer(CLIP, BITS, 5)
    rng = np.random.default_rng(0)
    inputs = {p: quant.encode(rng.normal(0, 0.1, 6), rng) for p in setup.neighbours}
    run_round(setup, inputs)
    run_round(setup, inputs, drop_after_mask=frozenset({"p002"}))
    found = spy.differencing_pairs()
    assert found and {party for party, _ in found} == {"p002"}
    assert max(err for _, err in found) < 1e-6


def test_lost_fit_reply_never_yields_two_sums_that_difference_one_update(spy: Spy) -> None:
    job = _job()
    transport = LoseOnce(InProcessTransport(_agents(job)))
    outcome = Coordinator(job, transport).run()

    first = outcome.history[0]
    assert first.attempts == 2 and first.participants == PARTIES
    # The attempt that lost a reply ended before any party was asked to unmask.
    assert transport.unmask_requests(1) == [1]
    assert [a for r, a, kind, _ in transport.log if r == 1 and kind is TaskKind.FIT] == [0, 1]
    # The retry trained from fresh seeds: every party got two different seeds in round 1.
    assert all(len(transport.fit_seeds[(1, p)]) == 2 for p in PARTIES)
    assert len(spy.sums) == 2  # one unmasked sum per round, nothing more
    assert spy.differencing_pairs() == []


def test_distributed_noise_retries_release_nothing_unaccounted(spy: Spy) -> None:
    job = _job(client_dp=True)
    transport = LoseOnce(InProcessTransport(_agents(job)))
    outcome = Coordinator(job, transport).run()

    releases = len(spy.sums)  # every noisy sum the coordinator ever unmasked
    assert releases == 2 and outcome.history[0].attempts == 2
    last = outcome.history[-1].privacy
    assert sum(k for _, k in last["releases"]) == releases
    assert last["epsilon"] == pytest.approx(epsilon(GaussianSpend(0.8, 1.0, releases), 1e-5))


class ReplayingSum(SecureSum):
    """A deviating coordinator: unmasks before it checks min_parties (the order the issue found)
    and retries a rejected round with the first try's fit seeds."""

    def sum(self, attempt: Attempt, options: dict[str, Any]) -> Summed:
        need = attempt.job.selection.min_parties
        attempt.job = attempt.job.model_copy(
            update={"selection": attempt.job.selection.model_copy(update={"min_parties": 1})}
        )
        total = super().sum(attempt, options)
        if len(total.participants) < need:
            raise RoundFailedError(f"{len(total.participants)} took part, {need} needed")
        return total


def test_coordinator_retrying_with_the_same_seeds_is_refused_by_the_parties(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(rounds=1)
    monkeypatch.setattr(collectors, "fit_seed", lambda s, r, a, i: fit_seed(s, r, 0, i))
    deviating = WeightedMean(ReplayingSum(job.privacy.secure_aggregation, job.seed))
    monkeypatch.setattr(coordinator, "build_collector", lambda j, n: deviating)
    transport = LoseOnce(InProcessTransport(_agents(job)))
    with pytest.raises(RoundFailedError) as err:
        Coordinator(job, transport).run()

    assert len(spy.sums) == 1  # the deviating first try: 4 survivors, unmasked
    assert "refuses to train round 1 from a seed it already trained a masked update from" in str(
        err.value
    )
    assert spy.differencing_pairs() == []


class SecondUnmask:
    """A deviating coordinator: after each unmask it asks every survivor to unmask the same
    masked inputs again (it could then name a different survivor set to each)."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.replayed: dict[str, Message] = {}

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        out = self.inner.exchange(tasks, timeout_s=timeout_s)
        if next(iter(tasks.values())).kind is TaskKind.SECAGG_UNMASK:
            self.replayed = dict(self.inner.exchange(tasks, timeout_s=timeout_s).replies)
        return out


def test_a_second_unmasking_of_one_masked_input_is_refused(spy: Spy) -> None:
    job = _job(rounds=1)
    transport = SecondUnmask(InProcessTransport(_agents(job)))
    outcome = Coordinator(job, transport).run()

    assert len(outcome.history[0].participants) == 5
    assert len(transport.replayed) == 5
    for party, reply in transport.replayed.items():
        assert reply.error is not None, party
        assert "no secure-aggregation state for round 1 attempt 0" in reply.error
        assert "after unmasking" in reply.error
        assert "reveal" not in reply.body
    assert len(spy.sums) == 1
    assert spy.differencing_pairs() == []
