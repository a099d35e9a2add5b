"""The coordinator plays against the party's own query policy and ledger (real party code).

The issue measured: a coordinator sending ``mechanism = "none"`` got 20 of 20 exact answers
from a party with budget epsilon 1; 8 threads got 10 releases where the budget allows 7, with
lost ledger entries; renaming the job started a fresh budget. Each test here is that attack.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fedsilo.analytics.config import AnalyticsJob, QueryPolicy
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import public_job, run_query
from fedsilo.analytics.sql import parse_query
from fedsilo.deploy.party_analytics import PartyAnalytics
from fedsilo.errors import BudgetExhaustedError, ErrorCode, RefusedError
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.ledger import PrivacyLedger
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import InProcessTransport

from .conftest import make_job, transport_for

SQL = "SELECT region, COUNT(*), SUM(amount) FROM t GROUP BY region"
FRAME = pd.DataFrame(
    {
        "region": ["north", "south", "north", "east"] * 5,
        "year": [2025] * 20,
        "amount": [10.0, 20.0, 30.0, 40.0] * 5,
        "score": [1.0] * 20,
    }
)
LAPLACE = {"mechanism": "laplace", "epsilon": 0.7}


def _party(
    ledger: Path | None,
    policy: QueryPolicy | None = None,
    budget: float | None = 1.0,
    job: AnalyticsJob | None = None,
) -> AnalyticsAgent:
    """A party with its own budget (epsilon 1 at its own delta), ledger and policy."""
    guard = PrivacyGuard("p0", PartyPrivacy(max_epsilon=budget, delta=1e-5, ledger=ledger))
    return AnalyticsAgent(
        "p0",
        PartyTable("mem", frame=FRAME),
        job or make_job(1, LAPLACE),
        guard=guard,
        policy=policy or QueryPolicy(),
    )


def _task(privacy: dict[str, Any], *, name: str = "banks", **extra: Any) -> bytes:
    """The QUERY task a (possibly deviating) coordinator sends: it chooses every field."""
    job = make_job(1, privacy, name=name, **extra)
    plan = make_plan(parse_query(SQL, job), job)
    body = {"plan": plan.to_json(), "job": public_job(job), "sql": SQL}
    return Message(TaskKind.QUERY, job.name, 0, "coordinator", body).encode()


def _entries(path: Path) -> int:
    return len(PrivacyLedger(path, "p0").entries())


def test_twenty_requests_for_exact_answers_get_no_statistics(tmp_path: Path) -> None:
    party = _party(tmp_path / "p0.sqlite")
    replies = [Message.decode(party.handle(_task({"mechanism": "none"}))) for _ in range(20)]
    assert all(r.error is not None and not r.arrays for r in replies)  # 0 of 20 answered
    assert replies[0].error_code is ErrorCode.REFUSED
    assert "refuses exact answers (mechanism 'none')" in str(replies[0].error)
    assert "allow_exact = false" in str(replies[0].error)
    assert _entries(tmp_path / "p0.sqlite") == 0


def test_run_query_with_mechanism_none_fails_with_the_party_rule() -> None:
    """The coordinator's own job says 'none'; the party's policy (not the job's) decides."""
    job = make_job(1, {"mechanism": "none"})  # its [policy] allows exact: not the party's
    transport = InProcessTransport({"p0": _party(None, job=job)})
    with pytest.raises(RefusedError, match=r"party 'p0' refuses exact answers"):
        run_query(job, SQL, transport=transport)


def test_a_refusal_names_the_setting_where_the_user_can_change_it() -> None:
    """Simulation: the job file's [policy]; a deployed party: [analytics.policy] in party.toml."""
    job = make_job(1, {"mechanism": "none"}, policy={"allow_exact": False})
    with pytest.raises(RefusedError) as simulated:
        run_query(job, SQL, transport=transport_for(job, [FRAME]))
    deployed = InProcessTransport({"p0": _party(None, job=job)})
    with pytest.raises(RefusedError) as party_toml:
        run_query(job, SQL, transport=deployed)

    assert "([policy] allow_exact = true in the job file)" in str(simulated.value)
    assert "party.toml" not in str(simulated.value)
    assert "([analytics.policy] allow_exact = true in its party.toml)" in str(party_toml.value)


def test_parties_refusing_alike_are_named_once_in_one_entry() -> None:
    job = make_job(3, {"mechanism": "none"}, policy={"allow_exact": False})
    with pytest.raises(RefusedError) as info:
        run_query(job, SQL, transport=transport_for(job, [FRAME] * 3))

    message = str(info.value)
    assert "3 failed: parties 'p0', 'p1', 'p2': each party refuses exact answers" in message
    assert message.count("refuses exact answers") == 1


def test_exact_answers_only_where_the_party_allows_them(tmp_path: Path) -> None:
    party = _party(tmp_path / "p0.sqlite", QueryPolicy(allow_exact=True))
    reply = Message.decode(party.handle(_task({"mechanism": "none"})))
    assert reply.error is None and reply.arrays["stats"][0, 0] == 10.0  # north: 10 rows
    assert reply.body["privacy"]["cost"] is None and _entries(tmp_path / "p0.sqlite") == 0


@pytest.mark.parametrize(
    ("privacy", "policy", "rule"),
    [
        ({"mechanism": "laplace", "epsilon": 0.9}, {"max_query_epsilon": 0.5}, "max_query_epsilon"),
        (
            {"mechanism": "gaussian", "noise_multiplier": 0.8, "delta": 1e-6},
            {"max_query_epsilon": 2.0},
            "max_query_epsilon",
        ),
        ({"mechanism": "laplace", "epsilon": 0.1}, {"mechanisms": ["gaussian"]}, "mechanisms"),
    ],
)
def test_a_request_outside_the_policy_is_refused_naming_the_rule(
    tmp_path: Path, privacy: dict[str, Any], policy: dict[str, Any], rule: str
) -> None:
    party = _party(tmp_path / "p0.sqlite", QueryPolicy(**policy), budget=100.0)
    reply = Message.decode(party.handle(_task(privacy)))
    assert reply.error is not None and not reply.arrays
    assert f"[analytics.policy] {rule}" in reply.error and "party 'p0'" in reply.error
    assert _entries(tmp_path / "p0.sqlite") == 0


def test_the_per_query_cap_is_priced_at_the_party_delta_not_the_coordinators() -> None:
    """A huge delta in the request makes the query look cheap; the party prices it itself."""
    party = _party(None, QueryPolicy(max_query_epsilon=2.0), budget=100.0)
    cheap_looking = {"mechanism": "gaussian", "noise_multiplier": 0.8, "delta": 0.5}
    reply = Message.decode(party.handle(_task(cheap_looking)))
    assert reply.error is not None and "at delta 1e-05" in reply.error


def test_a_smaller_group_size_than_the_party_requires_is_refused(tmp_path: Path) -> None:
    party = _party(tmp_path / "p0.sqlite", QueryPolicy(min_group_size=10))
    reply = Message.decode(party.handle(_task(LAPLACE, min_group_size=2)))
    assert reply.error is not None and "refuses min_group_size 2" in reply.error
    assert "[analytics.policy] min_group_size" in reply.error
    ok = Message.decode(party.handle(_task(LAPLACE, min_group_size=10)))
    assert ok.error is None


def test_a_group_size_just_below_the_party_minimum_is_refused() -> None:
    party = _party(None, QueryPolicy(min_group_size=10))
    reply = Message.decode(party.handle(_task(LAPLACE, min_group_size=9)))
    assert reply.error_code is ErrorCode.REFUSED and not reply.arrays
    assert "refuses min_group_size 9" in str(reply.error)


def test_every_noisy_answer_is_charged_to_the_ledger_before_it_leaves(tmp_path: Path) -> None:
    party = _party(tmp_path / "p0.sqlite", budget=3.0)
    for n in (1, 2):
        reply = Message.decode(party.handle(_task(LAPLACE)))
        assert reply.error is None and "stats" in reply.arrays
        assert _entries(tmp_path / "p0.sqlite") == n
        assert reply.body["privacy"]["cost"] == pytest.approx(0.7)
        assert reply.body["privacy"]["spent"] == pytest.approx(0.7 * n)


def test_eight_concurrent_queries_never_exceed_the_budget(tmp_path: Path) -> None:
    """8 threads, each a party process's handler over the same ledger file, 3 queries each."""
    ledger = tmp_path / "p0.sqlite"
    probe = _party(None, budget=3.0)
    capacity = 0
    while capacity < 24 and Message.decode(probe.handle(_task(LAPLACE))).error is None:
        capacity += 1
    assert 2 < capacity < 24
    _party(ledger).handle(_task({"mechanism": "none"}))  # create the file
    answered: list[float] = []
    refused: list[ErrorCode | None] = []
    start = threading.Barrier(8)

    def worker() -> None:
        party = _party(ledger, budget=3.0)  # its own guard, its own SQLite connection
        start.wait()
        for _ in range(3):
            reply = Message.decode(party.handle(_task(LAPLACE)))
            if reply.error is None:
                answered.append(reply.body["privacy"]["spent"])
            else:
                refused.append(reply.error_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answered) == capacity == _entries(ledger)  # never over, no entry lost
    assert max(answered) <= 3.0 and set(refused) == {ErrorCode.BUDGET_EXHAUSTED}
    assert len(answered) + len(refused) == 24


def test_renaming_the_job_does_not_start_a_fresh_budget(tmp_path: Path) -> None:
    """A deployed party (PartyAnalytics) spends its budget under job 'banks'; the coordinator
    renames the job (and forgets everything it knew): the party still refuses."""
    ledger = tmp_path / "p0.sqlite"
    csv = tmp_path / "t.csv"
    FRAME.to_csv(csv, index=False)

    def deployed() -> PartyAnalytics:  # a fresh party process each time, same files
        guard = PrivacyGuard("p0", PartyPrivacy(max_epsilon=1.5, delta=1e-5, ledger=ledger))
        return PartyAnalytics("p0", {"t": csv}, guard, QueryPolicy())

    party = deployed()
    assert Message.decode(party.handle(_task(LAPLACE, name="banks"))).error is None
    assert Message.decode(party.handle(_task(LAPLACE, name="banks"))).error is None
    refused = Message.decode(party.handle(_task(LAPLACE, name="banks")))
    assert refused.error_code is ErrorCode.BUDGET_EXHAUSTED
    for name in ("banks-renamed", "totally-new-job"):
        reply = Message.decode(deployed().handle(_task(LAPLACE, name=name)))
        assert reply.error_code is ErrorCode.BUDGET_EXHAUSTED, name
    assert _entries(ledger) == 2


def test_a_simulated_coordinator_renaming_its_job_meets_the_same_ledgers(tmp_path: Path) -> None:
    from fedsilo.analytics.run import simulation_transport

    frame_csv = tmp_path / "p0.csv"
    FRAME.to_csv(frame_csv, index=False)
    raw = make_job(1, LAPLACE).model_dump(mode="json") | {
        "parties": [{"name": "p0", "path": str(frame_csv), "max_epsilon": 1.5}]
    }
    spent = []
    for name in ("banks", "banks", "renamed"):
        renamed = AnalyticsJob.model_validate(raw | {"name": name})
        try:
            result = run_query(renamed, SQL, transport=simulation_transport(renamed, tmp_path))
            spent.append(result.spent["p0"][0])
        except BudgetExhaustedError as exc:
            assert "party 'p0'" in str(exc)
            spent.append(-1.0)
    assert spent[0] == pytest.approx(0.7) and spent[1] == pytest.approx(1.4)
    assert spent[2] == -1.0  # the renamed job meets the same ledger
