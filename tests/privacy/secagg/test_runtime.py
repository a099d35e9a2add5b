"""Secure aggregation through the real round loop and the in-process transport."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import fedsilo
from fedsilo.config import parse_job
from fedsilo.errors import RoundFailedError
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.params import ThreatModel, min_degree
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.simulation import load_simulated_data, simulated_party_identities
from tests.conftest import small_job


def _job(secure: bool, **overrides: Any) -> fedsilo.JobConfig:
    privacy = {"secure_aggregation": {"enabled": secure, **overrides.pop("secagg", {})}}
    return parse_job(small_job(privacy=privacy, **overrides), source="test")


@pytest.mark.parametrize(
    "overrides",
    [
        {"rounds": 4},
        {
            "rounds": 2,
            "data": {"dataset": "mnist-5k", "num_parties": 3, "partition": "iid"},
            "model": {"name": "mlp", "hidden": [32]},
            "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.05},
        },
    ],
    ids=["breast-cancer", "mnist-5k"],
)
def test_secure_aggregation_matches_plain_accuracy(overrides: dict[str, Any]) -> None:
    plain = fedsilo.simulate(_job(False, **overrides))
    secure = fedsilo.simulate(_job(True, **overrides))
    assert abs(plain.final_global["accuracy"] - secure.final_global["accuracy"]) <= 0.005
    assert abs(plain.final_global["loss"] - secure.final_global["loss"]) < 1e-3


def test_same_seed_gives_the_same_model_bit_for_bit() -> None:
    job = _job(True, rounds=2, data={"num_parties": 4})
    a, b = fedsilo.simulate(job), fedsilo.simulate(job)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


_SETUP_KINDS = (TaskKind.DESCRIBE, TaskKind.STATS, TaskKind.SETUP)


class _Dropping:
    """In-process transport whose chosen parties stop answering from a given step on."""

    def __init__(self, inner: InProcessTransport, drop: Mapping[str, TaskKind]) -> None:
        self.inner, self.drop = inner, drop
        self.seen: list[TaskKind] = []
        self.degrees: list[int] = []  # of every secure-aggregation setup sent

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        kind = next(iter(tasks.values())).kind
        self.seen.append(kind)
        if kind is TaskKind.SECAGG_KEYS:
            self.degrees.extend(int(t.body["degree"]) for t in tasks.values())
        kept = {p: t for p, t in tasks.items() if self.drop.get(p) is not kind}
        out = self.inner.exchange(kept, timeout_s=timeout_s)
        lost = {p: "dropped (test)" for p in tasks if p not in kept}
        return Gathered(out.replies, {**out.failures, **lost})


def _run_with_drops(job: fedsilo.JobConfig, drop: Mapping[str, TaskKind]) -> Any:
    data = load_simulated_data(job)
    ids = simulated_party_identities(job, data.parties)
    agents = {name: PartyAgent(name, d, identity=ids[name]) for name, d in data.parties.items()}
    transport = _Dropping(InProcessTransport(agents), drop)
    return Coordinator(job, transport).run(), transport


def test_parties_dropping_before_and_after_masking_leave_the_survivors_sum() -> None:
    job = _job(True, rounds=1, data={"num_parties": 10}, secagg={"threshold": 0.5})
    drop = {
        "party-1": TaskKind.SECAGG_SHARES,  # before masking
        "party-2": TaskKind.FIT,  # after sharing, before its masked input
        "party-3": TaskKind.FIT,
        "party-4": TaskKind.SECAGG_UNMASK,  # after masking: its input still counts
    }
    outcome, transport = _run_with_drops(job, drop)
    record = outcome.history[0]
    assert record.participants == sorted(f"party-{i}" for i in (4, 5, 6, 7, 8, 9, 10))
    assert "dropped" in record.failures["party-2"]
    assert [k for k in transport.seen if k not in _SETUP_KINDS] == [
        TaskKind.SECAGG_KEYS,
        TaskKind.SECAGG_SHARES,
        TaskKind.FIT,
        TaskKind.SECAGG_CONFIRM,
        TaskKind.SECAGG_UNMASK,
        TaskKind.EVALUATE,
    ]
    # The same survivors with plain FedAvg give the same model (up to quantization).
    plain_job = _job(False, rounds=1, data={"num_parties": 10})
    plain, _ = _run_with_drops(plain_job, {f"party-{i}": TaskKind.FIT for i in (1, 2, 3)})
    assert plain.history[0].participants == record.participants
    for name in plain.params:
        np.testing.assert_allclose(outcome.params[name], plain.params[name], atol=1e-5)


def test_too_few_survivors_fails_the_round_with_a_reason() -> None:
    job = _job(
        True,
        rounds=1,
        data={"num_parties": 4},
        secagg={"threshold": 1.0},
        selection={"min_parties": 2, "max_round_retries": 1},
    )
    with pytest.raises(RoundFailedError, match=r"secure aggregation aborted.*threshold"):
        _run_with_drops(job, {"party-1": TaskKind.FIT})


def test_neighbours_below_the_parties_minimum_run_at_the_minimum_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = _job(
        True,
        rounds=2,
        data={"num_parties": 10},
        secagg={"variant": "secagg+", "neighbours": 2},
    )
    least = min_degree(10, ThreatModel())  # dropout_rate 0.2, no collusion
    with caplog.at_level(logging.WARNING, logger="fedsilo.runtime.secure_sum"):
        outcome, transport = _run_with_drops(job, {})

    assert least == 4
    assert transport.degrees == [least] * 20  # every party, both rounds
    assert [len(r.participants) for r in outcome.history] == [10, 10]
    said = [r.getMessage() for r in caplog.records if r.name == "fedsilo.runtime.secure_sum"]
    assert said == [  # once per job, not per round
        "secure aggregation: privacy.secure_aggregation.neighbours = 2 is below the least "
        "degree parties accept for 10 parties with dropout_rate 0.2 and corruption_rate 0.0 "
        "(the survivors' graph could disconnect); using 4 neighbours"
    ]


def test_parties_refusing_a_low_degree_alike_fail_the_round_with_the_refusal_said_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A coordinator that does not raise the degree (deviating, or older): every party checks
    # the degree itself and refuses, in each of the three attempts.
    monkeypatch.setattr(wire, "plus_degree", lambda n, neighbours, threat: neighbours)
    job = _job(
        True,
        rounds=1,
        data={"num_parties": 10},
        secagg={"variant": "secagg+", "neighbours": 2},
    )
    with pytest.raises(RoundFailedError) as err:
        _run_with_drops(job, {})

    msg = str(err.value)
    parties = ", ".join(f"'party-{i}'" for i in range(1, 11))
    assert msg == (
        "round 1 failed after 3 attempt(s) (selection.max_round_retries = 2). Failures: "
        "attempts 1-3: secure aggregation aborted: 0 parties sent keys with enough live "
        f"neighbours; the threshold needs 2 | 10 parties ({parties}) in attempts 1-3: secagg "
        "keys: party reported: each party refuses the secure-aggregation round: degree 2 is "
        "below its minimum 4 for 10 parties, 2 neighbours, its dropout_rate 0.2 and "
        "corruption_rate 0.0 (the survivors' graph could disconnect); raise "
        "privacy.secure_aggregation.neighbours"
    )
    assert len(msg) < 800  # was ~9 KB: the refusal once per party and attempt
