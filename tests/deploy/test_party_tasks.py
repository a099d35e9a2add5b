"""The party process's router and its analytics handler, in process (no network)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fedsilo.analytics.config import QueryPolicy
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import public_job, run_query
from fedsilo.analytics.sql import parse_query
from fedsilo.deploy.party_analytics import PartyAnalytics
from fedsilo.deploy.party_tasks import TaskRouter
from fedsilo.errors import BudgetExhaustedError, ErrorCode, ProtocolError
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.ledger import PrivacyLedger
from fedsilo.privacy.secagg.identity import simulated_identities
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply
from fedsilo.runtime.party import TRAINING_KINDS
from fedsilo.runtime.transport import Gathered, InProcessTransport
from tests.analytics.conftest import make_job

SQL = "SELECT region, COUNT(*), SUM(amount) FROM t GROUP BY region"


class Echo:
    """A training role that records the tasks it gets."""

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.routes = dict.fromkeys(TRAINING_KINDS, self.answer)

    def answer(self, task: Message) -> Reply:
        self.seen.append(task)
        return {"role": "training"}, {}


def _task(privacy: dict[str, object] | None = None) -> bytes:
    job = make_job(2, privacy)
    plan = make_plan(parse_query(SQL, job), job)
    body = {"plan": plan.to_json(), "job": public_job(job), "sql": SQL}
    return Message(TaskKind.QUERY, job.name, 0, "coordinator", body).encode()


def _guard(tmp_path: Path, name: str, budget: float) -> PrivacyGuard:
    """A deployed party's own guard: its budget at its own delta, its ledger file."""
    ledger = tmp_path / f"ledger-{name}.sqlite"
    return PrivacyGuard(name, PartyPrivacy(max_epsilon=budget, delta=1e-5, ledger=ledger))


def _entries(tmp_path: Path, party: str) -> int:
    path = tmp_path / f"ledger-{party}.sqlite"
    return len(PrivacyLedger(path, party).entries()) if path.exists() else 0


EXACT_OK = QueryPolicy(allow_exact=True)


def _party(tmp_path: Path, budget: float = 10.0, policy: QueryPolicy = EXACT_OK) -> PartyAnalytics:
    csv = tmp_path / "t.csv"
    pd.DataFrame({"region": ["north", "south", "north"], "amount": [10.0, 20.0, 200.0]}).to_csv(
        csv, index=False
    )
    return PartyAnalytics("p0", {"t": csv}, _guard(tmp_path, "p0", budget), policy)


def test_router_sends_queries_to_analytics_and_the_rest_to_training(tmp_path: Path) -> None:
    training = Echo()
    router = TaskRouter(training.routes, _party(tmp_path).routes)
    fit = Message(TaskKind.FIT, "j", 1, "coordinator").encode()
    assert Message.decode(router.handle(fit)).body == {"role": "training"}
    junk = Message.decode(router.handle(b"junk"))  # the router answers malformed tasks
    assert junk.error_code is ErrorCode.BAD_REQUEST and "malformed" in (junk.error or "")
    reply = Message.decode(router.handle(_task()))
    assert reply.error is None and reply.kind is TaskKind.QUERY
    stats = reply.arrays["stats"]
    assert stats.shape[0] == 4 and stats[0, 0] == 2.0 and stats[1, 0] == 1.0  # north, south
    assert [t.kind for t in training.seen] == [TaskKind.FIT]


def test_party_refuses_unmapped_table_and_its_own_budget(tmp_path: Path) -> None:
    party = PartyAnalytics("p0", {}, _guard(tmp_path, "p0", 1.0), EXACT_OK)
    reply = Message.decode(party.handle(_task()))
    assert reply.error is not None and "p0" in reply.error and "[analytics.tables]" in reply.error

    party = _party(tmp_path, budget=1.2)
    dp = {"mechanism": "gaussian", "epsilon": 1.0}
    answered = Message.decode(party.handle(_task(dp)))
    assert answered.error is None
    assert _entries(tmp_path, "p0") == 1 and answered.body["privacy"]["budget"] == 1.2
    refused = Message.decode(party.handle(_task(dp)))
    assert refused.error is not None and "'p0'" in refused.error and "budget" in refused.error
    assert refused.error_code is ErrorCode.BUDGET_EXHAUSTED
    assert _entries(tmp_path, "p0") == 1


def test_party_rejects_a_plan_outside_the_schema(tmp_path: Path) -> None:
    job = make_job(2)
    plan = make_plan(parse_query(SQL, job), job).to_json()
    plan["columns"]["amount"]["upper"] = 1e9  # a looser bound than the job declares
    body = {"plan": plan, "job": public_job(job), "sql": SQL}
    task = Message(TaskKind.QUERY, job.name, 0, "coordinator", body).encode()
    reply = Message.decode(_party(tmp_path).handle(task))
    assert reply.error is not None and "differs from the job schema" in reply.error


SECURE_DP = {
    "mechanism": "gaussian",
    "epsilon": 1.0,
    "secure_aggregation": {"enabled": True, "variant": "secagg"},
}


def _secure_parties(tmp_path: Path, budgets: dict[str, float]) -> dict[str, PartyAnalytics]:
    out = {}
    ids = simulated_identities(budgets)
    for i, (name, budget) in enumerate(budgets.items()):
        csv = tmp_path / f"{name}.csv"
        pd.DataFrame(
            {"region": ["north", "south", "east"][: i + 1], "amount": [10.0, 20.0, 30.0][: i + 1]}
        ).to_csv(csv, index=False)
        out[name] = PartyAnalytics(
            name, {"t": csv}, _guard(tmp_path, name, budget), EXACT_OK, identity=ids[name]
        )
    return out


def test_secure_query_over_party_processes_charges_each_party_once(tmp_path: Path) -> None:
    parties = _secure_parties(tmp_path, {"p0": 10.0, "p1": 10.0})
    job = make_job(2, SECURE_DP, seed=1)
    result = run_query(job, SQL, transport=InProcessTransport(parties))
    assert result.notices[0].startswith("sums: secure aggregation (SecAgg)")
    assert [_entries(tmp_path, p) for p in parties] == [1, 1]


def test_secure_query_charges_a_party_when_its_masked_statistics_leave(tmp_path: Path) -> None:
    """p1 drops at 'unmask': p0 and p1 sent masked statistics (charged), the coordinator
    released nothing (it keeps no ledger); p2 dropping at 'mask' charges no one there."""
    parties: dict[str, Any] = dict(_secure_parties(tmp_path, {"p0": 10.0, "p1": 10.0, "p2": 10.0}))
    job = make_job(3, SECURE_DP, seed=1)

    class DropAt:
        def __init__(self, inner: PartyAnalytics, step: str) -> None:
            self.inner, self.step = inner, step

        def handle(self, data: bytes) -> bytes:
            if Message.decode(data).body.get("secagg", {}).get("step") == self.step:
                raise ConnectionError("party process went away")
            return self.inner.handle(data)

    parties["p1"] = DropAt(parties["p1"], "unmask")
    with pytest.raises(ProtocolError, match=r"step 'unmask'.*party 'p1'"):
        run_query(job, SQL, transport=InProcessTransport(parties))
    assert [_entries(tmp_path, p) for p in ("p0", "p1", "p2")] == [1, 1, 1]

    parties["p1"] = parties["p1"].inner
    parties["p2"] = DropAt(parties["p2"], "mask")
    with pytest.raises(ProtocolError, match=r"step 'mask'.*party 'p2'"):
        run_query(job, SQL, transport=InProcessTransport(parties))
    # p0 and p1 masked (charged: the coordinator cannot know p2 would drop); p2 did not
    assert [_entries(tmp_path, p) for p in ("p0", "p1", "p2")] == [2, 2, 1]


def test_secure_party_rechecks_its_budget_before_masking(tmp_path: Path) -> None:
    """Query A reaches 'mask' after query B, run in between, spent p0's budget: p0 refuses."""
    parties = _secure_parties(tmp_path, {"p0": 1.2, "p1": 10.0})
    job = make_job(2, SECURE_DP, seed=1)
    base = InProcessTransport(parties)
    inner_done: list[bool] = []

    class Interleaving:
        def party_names(self) -> list[str]:
            return base.party_names()

        def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
            if next(iter(tasks.values())).body["secagg"]["step"] == "mask" and not inner_done:
                run_query(job, SQL, transport=base)  # query B
                inner_done.append(True)
            return base.exchange(tasks, timeout_s=timeout_s)

    with pytest.raises(BudgetExhaustedError, match=r"step 'mask'.*party 'p0'.*budget"):
        run_query(job, SQL, transport=Interleaving())
    assert [_entries(tmp_path, p) for p in ("p0", "p1")] == [1, 2]  # p1 masked A as well
    # a further query is refused up front, at 'keys', before p0 computes anything
    with pytest.raises(BudgetExhaustedError, match=r"step 'keys'.*party 'p0'.*budget"):
        run_query(job, SQL, transport=base)
    stray = Message(
        TaskKind.QUERY, job.name, 0, "c", {"secagg": {"query": "nope", "step": "mask"}}
    ).encode()
    reply = Message.decode(parties["p1"].handle(stray))
    assert reply.error is not None and "no query nope in progress" in reply.error
