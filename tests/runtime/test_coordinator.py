"""The round loop against real party agents, some of them misbehaving."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest

from fedsilo.config import parse_job
from fedsilo.errors import RoundFailedError, SchemaError
from fedsilo.models import flatten
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import load_simulated_data
from tests.conftest import small_job
from tests.forgery import raw


class Tampering:
    """Wraps an honest agent and rewrites its fit replies."""

    def __init__(self, agent: PartyAgent, tamper: str) -> None:
        self.agent, self.tamper = agent, tamper

    def handle(self, data: bytes) -> bytes:
        reply = self.agent.handle(data)
        if Message.decode(data).kind is not TaskKind.FIT:
            return reply
        if self.tamper == "garbage":
            return b"\x00not a message"
        if self.tamper == "crash":
            raise RuntimeError("disk on fire")
        msg = Message.decode(reply)
        arrays = dict(msg.arrays)
        body = dict(msg.body)
        name = next(iter(arrays))
        if self.tamper == "nan":
            bad = arrays[name].copy()
            bad.flat[0] = np.nan
            # encode() would refuse NaN in JSON but arrays are raw: build bytes directly
            arrays[name] = bad
        elif self.tamper == "shape":
            arrays[name] = np.zeros((1, 1), dtype=arrays[name].dtype)
        elif self.tamper == "dtype":
            arrays[name] = arrays[name].astype(np.float64)
        elif self.tamper == "count":
            body["num_examples"] = 10**9
        return Message(msg.kind, msg.job_id, msg.round, msg.sender, body, arrays).encode()


def run(job_raw: dict[str, Any], tamper: dict[str, str] | None = None) -> Any:
    job = parse_job(job_raw, source="test")
    sim = load_simulated_data(job)
    agents: dict[str, Any] = {n: PartyAgent(n, d) for n, d in sim.parties.items()}
    for name, kind in (tamper or {}).items():
        agents[name] = Tampering(agents[name], kind)
    return Coordinator(job, InProcessTransport(agents)).run()


@pytest.mark.parametrize("tamper", ["nan", "shape", "dtype", "count", "garbage", "crash"])
def test_bad_update_is_rejected_with_reason_and_round_continues(tamper: str) -> None:
    outcome = run(small_job(rounds=2), {"party-2": tamper})
    for record in outcome.history:
        assert record.participants == ["party-1", "party-3"]
        assert "party-2" in record.failures
        assert record.failures["party-2"]
    assert outcome.history[-1].global_metrics["accuracy"] > 0.8


def test_one_round_of_fedavg_is_the_example_weighted_mean_of_party_models() -> None:
    raw = small_job(rounds=1)
    job = parse_job(raw, source="test")
    sim = load_simulated_data(job)
    seen: dict[str, tuple[np.ndarray, int]] = {}

    class Spy:
        def __init__(self, agent: PartyAgent) -> None:
            self.agent = agent

        def handle(self, data: bytes) -> bytes:
            reply = self.agent.handle(data)
            msg = Message.decode(reply)
            if msg.kind is TaskKind.FIT:
                seen[msg.sender] = (flatten(msg.arrays), int(msg.body["num_examples"]))
            return reply

    agents = {n: Spy(PartyAgent(n, d)) for n, d in sim.parties.items()}
    outcome = Coordinator(job, InProcessTransport(agents)).run()
    weights = np.array([seen[p][1] for p in sorted(seen)], dtype=np.float64)
    expected = (np.stack([seen[p][0] for p in sorted(seen)]) * weights[:, None]).sum(
        0
    ) / weights.sum()
    np.testing.assert_allclose(flatten(outcome.params), expected, rtol=1e-6, atol=1e-7)


def test_too_few_valid_updates_fails_the_round_with_reasons() -> None:
    raw = small_job(rounds=2, selection={"min_parties": 2, "max_round_retries": 1})
    with pytest.raises(RoundFailedError) as err:
        run(raw, {"party-1": "nan", "party-2": "shape"})
    msg = str(err.value)
    assert "round 1" in msg and "2 attempt(s)" in msg and "selection.min_parties" in msg
    assert "party-1" in msg and "party-2" in msg


def test_client_sampling_takes_the_configured_fraction() -> None:
    raw = small_job(
        rounds=4, data={"num_parties": 6}, selection={"fraction": 0.5, "min_parties": 2}
    )
    outcome = run(raw)
    sizes = {len(r.participants) for r in outcome.history}
    assert sizes == {3}
    assert len({tuple(r.participants) for r in outcome.history}) > 1  # resampled each round


def test_party_data_disagreeing_with_schema_fails_before_training() -> None:
    job = parse_job(small_job(), source="test")
    sim = load_simulated_data(job)
    name = "party-2"
    table = sim.parties[name].table
    assert table is not None
    broken = table.drop(columns=[table.columns[0]])
    agents = {n: PartyAgent(n, d) for n, d in sim.parties.items()}
    agents[name] = PartyAgent(name, type(sim.parties[name])(source="bad.csv", table=broken))
    with pytest.raises(SchemaError, match=rf"party '{name}'.*{table.columns[0]}"):
        Coordinator(job, InProcessTransport(agents)).run()


def test_training_agent_refuses_tasks_of_other_protocols() -> None:
    job = parse_job(small_job(), source="test")
    name, data = next(iter(load_simulated_data(job).parties.items()))
    agent = PartyAgent(name, data)
    reply = Message.decode(
        agent.handle(Message(TaskKind.QUERY, "job", 0, "coordinator", {}, {}).encode())
    )
    assert reply.error is not None
    assert "does not answer 'query' tasks" in reply.error


class PoisonedTasks:
    """A deviating coordinator, as party-2 sees it: every fit task carries an infinite
    parameter (bytes written by hand: what a hostile process can send)."""

    def __init__(self, agent: PartyAgent) -> None:
        self.agent = agent
        self.fit_replies: list[Message] = []

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        if task.kind is not TaskKind.FIT:
            return self.agent.handle(data)
        arrays = dict(task.arrays)
        name = next(iter(arrays))
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = np.inf
        reply = self.agent.handle(raw(task, task.body, arrays))
        self.fit_replies.append(Message.decode(reply))
        return reply


def test_a_party_refuses_a_fit_task_with_non_finite_parameters() -> None:
    job = parse_job(small_job(rounds=2), source="test")
    agents: dict[str, Any] = {
        n: PartyAgent(n, d) for n, d in load_simulated_data(job).parties.items()
    }
    agents["party-2"] = poisoned = PoisonedTasks(agents["party-2"])
    outcome = Coordinator(job, InProcessTransport(agents)).run()
    assert len(poisoned.fit_replies) == 2
    for reply in poisoned.fit_replies:
        assert reply.error is not None and "NaN or infinite" in reply.error
        assert not reply.arrays  # it trained nothing and sent nothing back
    assert all("party-2" not in record.participants for record in outcome.history)


def test_rounds_run_with_the_heap_frozen_and_leave_it_as_it_was() -> None:
    """The job's static heap is kept out of the collector's passes during the rounds only
    (Coordinator._heap_frozen), whether the job succeeds or fails, and a heap the process
    froze itself stays frozen."""
    seen: list[int] = []

    class Watching(Coordinator):
        def _round(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(gc.get_freeze_count())
            return super()._round(*args, **kwargs)

    job = parse_job(small_job(rounds=2), source="test")
    sim = load_simulated_data(job)
    assert gc.get_freeze_count() == 0
    Watching(job, InProcessTransport({n: PartyAgent(n, d) for n, d in sim.parties.items()})).run()
    assert len(seen) == 2 and min(seen) > 0  # the parties' data and models, at least
    assert gc.get_freeze_count() == 0

    failing = parse_job(
        small_job(rounds=2, selection={"min_parties": 3, "max_round_retries": 0}), source="test"
    )
    agents: dict[str, Any] = {n: PartyAgent(n, d) for n, d in sim.parties.items()}
    agents["party-1"] = Tampering(agents["party-1"], "nan")
    with pytest.raises(RoundFailedError):
        Watching(failing, InProcessTransport(agents)).run()
    assert gc.get_freeze_count() == 0

    gc.freeze()  # the host process froze its own heap: the job leaves it frozen
    try:
        seen.clear()
        Watching(
            job, InProcessTransport({n: PartyAgent(n, d) for n, d in sim.parties.items()})
        ).run()
        assert len(seen) == 2 and min(seen) > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
