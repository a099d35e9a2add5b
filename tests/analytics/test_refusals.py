"""Queries outside the subset, unknown or non-public columns, and overspending are refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedsilo.analytics.config import parse_analytics_job
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import public_job, run_query, simulated_party
from fedsilo.analytics.sql import _SIMPLE, SUPPORTED, parse_query
from fedsilo.errors import BudgetExhaustedError, ConfigError, ProtocolError, UnsupportedError
from fedsilo.privacy.ledger import PrivacyLedger
from fedsilo.protocol.messages import Message, TaskKind

from .conftest import COLUMNS, make_job, transport_for

FRAME = pd.DataFrame(
    {"region": ["north", "south"], "year": [2025, 2024], "amount": [1.0, 2.0], "score": [3.0, 4.0]}
)


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT amount FROM t", "not in GROUP BY"),
        ("SELECT COUNT(*) FROM t ORDER BY 1", "not supported"),
        ("SELECT COUNT(*) FROM t LIMIT 3", "not supported"),
        ("SELECT COUNT(*) FROM t JOIN u ON t.a = u.a", "not supported"),
        ("SELECT COUNT(DISTINCT region) FROM t", "DISTINCT"),
        ("SELECT MIN(amount) FROM t", "BINS"),
        ("SELECT MEDIAN(amount) FROM t", "supported: SELECT"),
        ("SELECT SUM(amount + 1) FROM t", "plain column"),
        ("SELECT COUNT(*) FROM t WHERE amount > score", "literal"),
        ("SELECT COUNT(*) FROM t WHERE amount IN (SELECT 1)", "literal"),
        ("SELECT COUNT(*) FROM t WHERE region = 1", "text"),
        ("SELECT COUNT(*) FROM t WHERE lower(region) = 'x'", "supported: SELECT"),
        ("SELECT COUNT(*) FROM other", "this job's table is 't'"),
        ("SELECT HISTOGRAM(score, BINS=[3, 2]) FROM t", "strictly increasing"),
        ("SELECT QUANTILE(score, 1.5, BINS=[0, 1]) FROM t", "q must be in (0, 1)"),
        ("SELECT SUM(region) FROM t", "needs a number column"),
        ("DROP TABLE t", "single SELECT"),
        ("SELECT COUNT(*) FROM t; SELECT 1", "single SELECT"),
        ("SELEC COUNT(*) FROM t", "supported"),
    ],
)
def test_unsupported_sql_is_refused_with_what_is_supported(sql: str, fragment: str) -> None:
    with pytest.raises(UnsupportedError, match=None) as info:
        parse_query(sql, make_job(1))
    assert fragment in str(info.value)


def test_two_spellings_of_one_aggregate_keep_the_names_the_query_wrote() -> None:
    job = make_job(2)
    sql = "SELECT VARIANCE(amount), VAR_SAMP(amount), VAR(amount), STDEV(score) FROM t"

    result = run_query(job, sql, transport=transport_for(job, [FRAME, FRAME]))

    assert result.labels == ["VARIANCE(amount)", "VAR_SAMP(amount)", "VAR(amount)", "STDEV(score)"]
    variances = [c.value for c in result.cells[0][:3]]
    assert variances[0] is not None and variances == [variances[0]] * 3


def test_the_supported_hint_lists_every_accepted_spelling() -> None:
    spellings = {"VAR"} | {n for node in _SIMPLE for n in node.sql_names()}
    listed = set(re.findall(r"[A-Z_]+", SUPPORTED))
    for name in sorted(spellings):
        parse_query(f"SELECT {name}(amount) FROM t", make_job(1))  # accepted
        assert name in listed, name


def test_unknown_column_is_named() -> None:
    with pytest.raises(UnsupportedError, match=r"unknown column 'income'.*\['amount'"):
        parse_query("SELECT AVG(income) FROM t", make_job(1))


def test_group_by_a_non_public_column_is_refused() -> None:
    with pytest.raises(UnsupportedError, match=r"cannot GROUP BY 'amount'.*\['region', 'year'\]"):
        parse_query("SELECT amount, COUNT(*) FROM t GROUP BY amount", make_job(1))


@pytest.mark.parametrize("name", ["suppressed", "answers"])
def test_group_by_a_column_named_like_an_answer_field_is_refused(name: str) -> None:
    # its group value and the row's own field would be one JSON key: one of them lost
    columns = {**COLUMNS, name: {"type": "category", "categories": ["a", "b"]}}
    job = parse_analytics_job(
        {
            "table": "t",
            "columns": columns,
            "parties": [{"name": "p0", "path": "unused.csv"}],
            "privacy": {"mechanism": "none"},
            "policy": {"allow_exact": True},
        },
        source="test",
    )
    with pytest.raises(UnsupportedError, match=rf"cannot GROUP BY '{name}': an answer row's own"):
        parse_query(f"SELECT {name}, COUNT(*) FROM t GROUP BY {name}", job)
    parse_query(f"SELECT COUNT(*) FROM t WHERE {name} = 'a'", job)  # filtering by it is fine


def test_query_over_a_party_budget_is_refused_naming_party_budget_and_cost(tmp_path: Path) -> None:
    job = parse_analytics_job(
        {
            "table": "t",
            "columns": COLUMNS,
            "parties": [
                {"name": "p0", "path": "a.csv", "max_epsilon": 5.0},
                {"name": "p1", "path": "b.csv", "max_epsilon": 1.5},
            ],
            "privacy": {"mechanism": "laplace", "epsilon": 1.0},
            "seed": 0,
        },
        source="test",
    )
    t = transport_for(job, [FRAME, FRAME], tmp_path)
    run_query(job, "SELECT COUNT(*) FROM t", transport=t)
    with pytest.raises(BudgetExhaustedError) as info:
        run_query(job, "SELECT COUNT(*) FROM t", transport=t)
    text = str(info.value)
    assert "party 'p1'" in text and "budget of epsilon 1.5" in text and "costs 1" in text
    # the refusing party records nothing; p0 answered (its statistics left), so it paid
    entries = {p: len(PrivacyLedger(tmp_path / f"{p}.sqlite", p).entries()) for p in ("p0", "p1")}
    assert entries == {"p0": 2, "p1": 1}


def test_config_errors_name_the_key() -> None:
    bad = {"table": "t", "columns": {"amount": {"type": "number", "lower": 5, "upper": 1}}}
    with pytest.raises(ConfigError, match=r"columns.amount.*lower < upper"):
        parse_analytics_job(
            {**bad, "parties": [{"name": "a", "path": "x"}], "privacy": {"mechanism": "none"}},
            source="job.toml",
        )
    with pytest.raises(ConfigError, match=r"privacy.*exactly one of epsilon, noise_multiplier"):
        parse_analytics_job(
            {
                "table": "t",
                "columns": COLUMNS,
                "parties": [{"name": "a", "path": "x"}],
                "privacy": {"mechanism": "gaussian"},
            },
            source="job.toml",
        )


def test_party_rejects_a_plan_outside_its_schema_and_survives_garbage() -> None:
    job = make_job(1)
    agent = simulated_party("p0", PartyTable("mem", frame=FRAME), job)
    plan = make_plan(parse_query("SELECT COUNT(*) FROM t WHERE year = 2025", job), job).to_json()
    plan["where"] = "1=1) UNION SELECT * FROM read_csv('/etc/passwd') --"
    reply = Message.decode(
        agent.handle(Message(TaskKind.QUERY, "j", 0, "c", {"plan": plan}).encode())
    )
    assert reply.error is not None and "filter" in reply.error
    reply = Message.decode(agent.handle(b"not a message"))
    assert reply.error is not None and "malformed" in reply.error


def _forge(plan: dict[str, Any], field: str) -> str:
    """Change one field of a plan the coordinator sends; the refusal the party must give."""
    if field == "table":
        plan["table"] = "payroll"
        return "plan names table 'payroll'"
    if field == "bounds":  # wider clipping bounds: one row could move a sum by a billion
        plan["columns"]["amount"]["upper"] = 1e9
        return "plan's column 'amount' differs from the job schema"
    if field == "categories":  # a group space other than the public one
        plan["categories"][0] = ["north"]
        return "plan groups by 'region' with undeclared categories"
    if field == "group_by_number":  # a number column: its public categories are none at all
        plan["group_by"], plan["categories"] = ["amount"], [[]]
        return "plan groups by 'amount' with undeclared categories"
    if field == "undeclared_column":  # a statistic over a column outside the plan's schema
        plan["blocks"].append({"kind": "s1", "columns": ["score"], "bins": []})
        return "plan uses undeclared column 'score'"
    plan["blocks"].append({"kind": "rows", "columns": ["amount"], "bins": []})
    return "plan has an unknown statistic 'rows'"


@pytest.mark.parametrize(
    "field",
    ["table", "bounds", "categories", "group_by_number", "undeclared_column", "unknown_kind"],
)
def test_party_refuses_a_plan_the_coordinator_changed(field: str) -> None:
    job = make_job(1)
    sql = "SELECT region, COUNT(*), SUM(amount) FROM t GROUP BY region"
    plan = make_plan(parse_query(sql, job), job).to_json()
    expected = _forge(plan, field)
    task = Message(
        TaskKind.QUERY, job.name, 0, "c", {"plan": plan, "job": public_job(job), "sql": sql}
    )
    reply = Message.decode(
        simulated_party("p0", PartyTable("m", frame=FRAME), job).handle(task.encode())
    )
    assert reply.error is not None and expected in reply.error and not reply.arrays


def test_missing_party_file_fails_the_query_naming_the_party(tmp_path: Path) -> None:
    job = parse_analytics_job(
        {
            "table": "t",
            "columns": COLUMNS,
            "parties": [{"name": "bank-a", "path": str(tmp_path / "nope.csv")}],
            "privacy": {"mechanism": "none"},
            "policy": {"allow_exact": True},
        },
        source="test",
    )
    from fedsilo.analytics.run import simulation_transport

    with pytest.raises(ProtocolError, match=r"party 'bank-a'.*does not exist"):
        run_query(job, "SELECT COUNT(*) FROM t", transport=simulation_transport(job))


def test_csv_and_parquet_files_give_the_same_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "region": rng.choice(["north", "east"], 50),
            "year": rng.choice([2024, 2025], 50),
            "amount": rng.uniform(0, 100, 50),
            "score": rng.uniform(0, 100, 50),
        }
    )
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "b.parquet")
    answers = []
    for name in ("a.csv", "b.parquet"):
        job = parse_analytics_job(
            {
                "table": "t",
                "columns": COLUMNS,
                "parties": [{"name": "x", "path": str(tmp_path / name)}],
                "privacy": {"mechanism": "none"},
                "policy": {"allow_exact": True},
            },
            source="test",
        )
        from fedsilo.analytics.run import simulation_transport

        r = run_query(
            job,
            "SELECT region, COUNT(*), AVG(amount) FROM t WHERE year = 2025 GROUP BY region",
            transport=simulation_transport(job),
        )
        answers.append([[c.value for c in row] for row in r.cells])
    assert answers[0][0][0] == answers[1][0][0]
    assert np.allclose(
        np.array(answers[0], dtype=float),
        np.array(answers[1], dtype=float),
        rtol=1e-12,
        equal_nan=True,
    )
