"""Typed QUERY bodies: a malformed task is refused by the party naming the field; a malformed
reply fails the query naming the party and the field, and nothing is released."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import public_job, run_query, simulated_party
from fedsilo.analytics.sql import parse_query
from fedsilo.errors import ErrorCode, ProtocolError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import InProcessTransport
from tests.forgery import raw

from .conftest import make_job

FRAME = pd.DataFrame(
    {"region": ["north", "south"], "year": [2025, 2024], "amount": [1.0, 2.0], "score": [3.0, 4.0]}
)
SQL = "SELECT region, COUNT(*) FROM t GROUP BY region"
Tamper = Callable[[dict[str, Any]], dict[str, Any]]


def honest_task() -> tuple[Any, dict[str, Any]]:
    job = make_job(1)
    plan = make_plan(parse_query(SQL, job), job).to_json()
    return job, {"plan": plan, "job": public_job(job), "sql": SQL}


@pytest.mark.parametrize(
    ("tamper", "field", "why"),
    [
        (lambda b: {**b, "budget": 1e9}, "budget", "Extra inputs are not permitted"),
        (lambda b: {**b, "sql": ["DROP TABLE t"]}, "sql", "valid string"),
        (lambda b: {**b, "plan": {**b["plan"], "group_by": "region"}}, "plan.group_by", "tuple"),
        (
            lambda b: {**b, "job": {**b["job"], "privacy": {"mechanism": "exact"}}},
            "job.privacy.mechanism",
            "Input should be",
        ),
        (lambda b: {**b, "secagg": {"query": "q1", "step": "dance"}}, "secagg.step", "Input"),
        (
            lambda b: {**b, "plan": {**b["plan"], "blocks": [{"kind": "count"}]}},
            "plan.blocks.0",
            "",
        ),
    ],
)
def test_a_malformed_query_task_is_refused_naming_the_field(
    tamper: Tamper, field: str, why: str
) -> None:
    job, body = honest_task()
    agent = simulated_party("p0", PartyTable("mem", frame=FRAME), job)
    task = Message(TaskKind.QUERY, job.name, 0, "coordinator", tamper(body))
    reply = Message.decode(agent.handle(raw(task, task.body)))
    assert reply.error_code is ErrorCode.BAD_REQUEST and reply.error is not None
    assert f"party 'p0' round 0: query field '{field}" in reply.error
    assert why in reply.error and "is invalid" in reply.error


def test_a_nan_in_a_query_task_is_refused_naming_the_field() -> None:
    job, body = honest_task()
    agent = simulated_party("p0", PartyTable("mem", frame=FRAME), job)
    body["job"]["min_group_size"] = float("nan")
    task = Message(TaskKind.QUERY, job.name, 0, "coordinator", {})
    reply = Message.decode(agent.handle(raw(task, body)))
    assert reply.error is not None
    assert "field 'job.min_group_size' is NaN or infinite" in reply.error


class Tampering:
    """An honest analytics party whose replies leave with a rewritten body."""

    def __init__(self, agent: AnalyticsAgent, tamper: Tamper) -> None:
        self.agent, self.tamper = agent, tamper

    def handle(self, data: bytes) -> bytes:
        reply = Message.decode(self.agent.handle(data))
        return raw(reply, self.tamper(dict(reply.body)))


@pytest.mark.parametrize(
    ("tamper", "refusal"),
    [
        (lambda b: {**b, "groups": "two"}, "query field 'groups' is invalid"),
        (lambda b: {**b, "statistics": -1}, "query field 'statistics' is invalid"),
        (lambda b: {**b, "groups": 7}, "query fields 'groups', 'statistics' are (7, 1)"),
        (lambda b: {**b, "note": "trust me"}, "query field 'note' is invalid"),
        (lambda b: {**b, "groups": float("inf")}, "query field 'groups' is NaN or infinite"),
    ],
)
def test_a_malformed_query_reply_fails_the_query_naming_party_and_field(
    tamper: Tamper, refusal: str
) -> None:
    job = make_job(2)
    honest = simulated_party("p0", PartyTable("mem", frame=FRAME), job)
    forger = Tampering(simulated_party("p1", PartyTable("mem", frame=FRAME), job), tamper)
    transport = InProcessTransport({"p0": honest, "p1": forger})
    with pytest.raises(ProtocolError) as info:
        run_query(job, SQL, transport=transport)
    assert "party 'p1'" in str(info.value) and refusal in str(info.value)
    assert "party 'p0'" not in str(info.value)  # the honest party is not blamed


def test_a_forged_spend_report_fails_the_query_naming_the_field() -> None:
    job = make_job(1)
    forger = Tampering(
        simulated_party("p0", PartyTable("mem", frame=FRAME), job),
        lambda b: {**b, "privacy": {**b["privacy"], "spent": -3.0}},
    )
    with pytest.raises(ProtocolError, match=r"party 'p0' round 0: query field 'privacy\.spent'"):
        run_query(job, SQL, transport=InProcessTransport({"p0": forger}))
