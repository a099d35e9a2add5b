"""The party process's router and its analytics handler, in process (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import public_job
from fedsilo.analytics.sql import parse_query
from fedsilo.deploy.party_tasks import PartyAnalytics, TaskRouter, peek_kind
from fedsilo.runtime.messages import Message, TaskKind
from tests.analytics.conftest import make_job

SQL = "SELECT region, COUNT(*), SUM(amount) FROM t GROUP BY region"


class Echo:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def handle(self, data: bytes) -> bytes:
        self.seen.append(data)
        return b"training"


def _task(privacy: dict[str, object] | None = None) -> bytes:
    job = make_job(2, privacy)
    plan = make_plan(parse_query(SQL, job), job)
    body = {"plan": plan.to_json(), "job": public_job(job), "sql": SQL}
    return Message(TaskKind.QUERY, job.name, 0, "coordinator", body).encode()


def _party(tmp_path: Path, budget: float = 10.0) -> PartyAnalytics:
    csv = tmp_path / "t.csv"
    pd.DataFrame({"region": ["north", "south", "north"], "amount": [10.0, 20.0, 200.0]}).to_csv(
        csv, index=False
    )
    return PartyAnalytics("p0", {"t": csv}, tmp_path / "ledger", budget)


def test_router_sends_queries_to_analytics_and_the_rest_to_training(tmp_path: Path) -> None:
    training = Echo()
    router = TaskRouter(training, _party(tmp_path))
    fit = Message(TaskKind.FIT, "j", 1, "coordinator").encode()
    assert peek_kind(fit) is TaskKind.FIT and peek_kind(b"junk") is None
    assert router.handle(fit) == b"training"
    assert router.handle(b"junk") == b"training"  # the agent answers malformed tasks
    reply = Message.decode(router.handle(_task()))
    assert reply.error is None and reply.kind is TaskKind.QUERY
    stats = reply.arrays["stats"]
    assert stats.shape[0] == 4 and stats[0, 0] == 2.0 and stats[1, 0] == 1.0  # north, south
    assert len(training.seen) == 2


def test_party_refuses_unmapped_table_and_its_own_budget(tmp_path: Path) -> None:
    party = PartyAnalytics("p0", {}, tmp_path / "ledger", 1.0)
    reply = Message.decode(party.handle(_task()))
    assert reply.error is not None and "p0" in reply.error and "[analytics.tables]" in reply.error

    party = _party(tmp_path, budget=1.2)
    dp = {"mechanism": "gaussian", "epsilon": 1.0}
    assert Message.decode(party.handle(_task(dp))).error is None
    ledger = json.loads((tmp_path / "ledger" / "p0.json").read_text())
    assert len(ledger["entries"]) == 1 and ledger["max_epsilon"] == 1.2
    refused = Message.decode(party.handle(_task(dp)))
    assert refused.error is not None and "'p0'" in refused.error and "budget" in refused.error
    assert refused.body["error_type"] == "BudgetExceededError"
    assert len(json.loads((tmp_path / "ledger" / "p0.json").read_text())["entries"]) == 1


def test_party_rejects_a_plan_outside_the_schema(tmp_path: Path) -> None:
    job = make_job(2)
    plan = make_plan(parse_query(SQL, job), job).to_json()
    plan["columns"]["amount"]["upper"] = 1e9  # a looser bound than the job declares
    body = {"plan": plan, "job": public_job(job), "sql": SQL}
    task = Message(TaskKind.QUERY, job.name, 0, "coordinator", body).encode()
    reply = Message.decode(_party(tmp_path).handle(task))
    assert reply.error is not None and "differs from the job schema" in reply.error
