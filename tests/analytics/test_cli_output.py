"""`fedsilo query` on the bank example: table, CSV, JSON, HTML; built-in dataset jobs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from fedsilo.analytics.config import load_analytics_job, parse_analytics_job
from fedsilo.analytics.dp import calibrate
from fedsilo.analytics.output import to_csv
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import DEFAULT_LEDGERS, run_query, simulation_transport
from fedsilo.analytics.sql import parse_query
from fedsilo.cli import app
from fedsilo.privacy.accounting import GaussianSpend, epsilon
from fedsilo.privacy.ledger import PrivacyLedger

from .conftest import make_job, transport_for
from .test_dp import frames

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "analytics"
SQL = (
    "SELECT region, COUNT(*) AS n, AVG(amount) AS mean, "
    "HISTOGRAM(score, BINS=[300,400,500,600,700,850]) AS h FROM transactions "
    "WHERE year = 2025 GROUP BY region"
)


def _example_job(tmp_path: Path, privacy: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "make_data.py"),
            "--rows",
            "300",
            "--out",
            str(tmp_path / "data"),
        ],
        check=True,
        capture_output=True,
    )
    text = (EXAMPLE / "job.toml").read_text()
    text = text.replace('mechanism = "gaussian"  # gaussian | laplace | none', privacy)
    if "none" in privacy:
        text = text.replace(
            "epsilon = 1.0           # cost of each query, charged to every party\n", ""
        )
        text = text.replace("delta = 1e-6\n", "")
        text += "\n[policy]\nallow_exact = true   # the simulated banks allow exact answers\n"
    job = tmp_path / "job.toml"
    job.write_text(text)
    return job


def test_cli_json_without_dp_matches_duckdb_on_the_pooled_csvs(tmp_path: Path) -> None:
    job = _example_job(tmp_path, 'mechanism = "none"')
    res = CliRunner().invoke(
        app, ["query", str(job), SQL, "--format", "json", "--ledgers", str(tmp_path / "run")]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert "sums: plain (secure aggregation not enabled)" in out["notices"]
    ref = duckdb.sql(
        f"SELECT region, COUNT(*), AVG(LEAST(amount, 1000)) FROM '{tmp_path}/data/*.csv' "
        "WHERE year = 2025 GROUP BY region"
    ).fetchall()
    got = {r["region"]: r["answers"] for r in out["rows"]}
    for region, n, mean in ref:
        assert got[region]["n"]["value"] == n
        assert abs(got[region]["mean"]["value"] - mean) <= 1e-9 * mean


def test_cli_table_csv_html_with_dp_and_budget_refusal(tmp_path: Path) -> None:
    job = _example_job(tmp_path, 'mechanism = "gaussian"')
    run = str(tmp_path / "run")
    runner = CliRunner()
    res = runner.invoke(
        app, ["query", str(job), SQL, "--ledgers", run, "--html", str(tmp_path / "q.html")]
    )
    assert res.exit_code == 0, res.output
    assert "sums: plain (secure aggregation not enabled)" in res.stdout
    assert "bank-c: epsilon spent" in res.stdout
    page = (tmp_path / "q.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    res = runner.invoke(app, ["query", str(job), SQL, "--ledgers", run, "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["region"] for r in rows] == ["north", "south", "east", "west"]
    assert float(rows[0]["n noise_sd"]) > 0
    # bank-c allows epsilon 3 in total; Gaussian queries compose through the accountant
    # (sublinearly: 7 queries of epsilon 1 fit), then the next one is refused.
    for _ in range(20):
        res = runner.invoke(app, ["query", str(job), SQL, "--ledgers", run])
        if res.exit_code != 0:
            break
    assert res.exit_code == 2
    assert "party 'bank-c' has a budget of epsilon 3" in res.output
    spent = PrivacyLedger(tmp_path / "run" / "bank-c.sqlite", "bank-c").entries()
    assert len(spent) == 7
    assert (
        "unknown column"
        in runner.invoke(app, ["query", str(job), "SELECT AVG(x) FROM transactions"]).output
    )


def test_csv_histogram_has_one_low_and_one_high_per_bin_like_json() -> None:
    job = make_job(2, privacy={"mechanism": "gaussian", "epsilon": 1.0, "delta": 1e-6}, seed=3)
    sql = "SELECT region, COUNT(*) AS n, HISTOGRAM(score, BINS=[0, 50, 100]) AS h FROM t GROUP BY region"
    result = run_query(job, sql, transport=transport_for(job, frames(2)))

    rows = list(csv.DictReader(io.StringIO(to_csv(result))))

    answers = [r["answers"] for r in result.to_json()["rows"]]
    assert len(rows) == len(answers) == 4
    for row, answer in zip(rows, answers, strict=True):
        h = answer["h"]
        assert json.loads(row["h"]) == h["value"]
        assert json.loads(row["h noise_sd"]) == h["noise_sd"]
        assert json.loads(row["h ci95_low"]) == [lo for lo, _ in h["ci95"]]
        assert json.loads(row["h ci95_high"]) == [hi for _, hi in h["ci95"]]
        assert float(row["n ci95_low"]) == answer["n"]["ci95"][0]
        assert float(row["n ci95_high"]) == answer["n"]["ci95"][1]


def test_docs_state_the_ledger_default_and_the_queries_bank_c_can_afford() -> None:
    """docs/analytics.md names fedsilo.query's ledger default; the example's README the number
    of its queries bank-c's budget admits, priced and composed as the party does."""
    job = load_analytics_job(EXAMPLE / "job.toml")
    noise = calibrate(make_plan(parse_query(SQL, job), job), job.privacy)
    assert noise.noise_multiplier is not None
    delta, budget = job.privacy.delta, job.budget("bank-c")
    fits = max(
        k
        for k in range(1, 50)
        if epsilon(GaussianSpend(noise.noise_multiplier, 1.0, k), delta) <= budget
    )

    readme = (EXAMPLE / "README.md").read_text()
    docs = (EXAMPLE.parents[1] / "docs" / "analytics.md").read_text()

    assert f"({fits} queries of epsilon 1 fit at delta 1e-6" in readme
    assert f"(ledgers in `{DEFAULT_LEDGERS}` unless `ledger_dir=`" in docs


def test_builtin_dataset_split_into_parties(tmp_path: Path) -> None:
    job = parse_analytics_job(
        {
            "table": "cells",
            "data": {"dataset": "breast-cancer", "num_parties": 3},
            "columns": {"label": {"type": "category", "categories": ["malignant", "benign"]}},
            "privacy": {"mechanism": "none"},
            "policy": {"allow_exact": True},
        },
        source="test",
    )
    r = run_query(
        job,
        "SELECT label, COUNT(*) FROM cells GROUP BY label",
        transport=simulation_transport(job),
    )
    assert [c[0].value for c in r.cells] == [212.0, 357.0]


def test_cli_secure_example_equals_the_plain_example_up_to_fixed_point(tmp_path: Path) -> None:
    """examples/analytics/job_secure.toml: the same seeded noise on securely summed statistics."""
    plain = _example_job(tmp_path, 'mechanism = "gaussian"')
    secure = tmp_path / "job_secure.toml"
    secure.write_text((EXAMPLE / "job_secure.toml").read_text())
    outs = []
    for job in (plain, secure):
        res = CliRunner().invoke(
            app, ["query", str(job), SQL, "--format", "json", "--ledgers", str(tmp_path / job.stem)]
        )
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.stdout))
    a, b = outs
    assert b["notices"][0].startswith(
        "sums: secure aggregation (SecAgg+), coordinator sees only the sum"
    )
    assert a["notices"][0] == "sums: plain (secure aggregation not enabled)"
    for ra, rb in zip(a["rows"], b["rows"], strict=True):
        assert ra["suppressed"] == rb["suppressed"]
        for label in ("n", "mean"):
            va, vb = ra["answers"][label]["value"], rb["answers"][label]["value"]
            assert (va is None) == (vb is None)
            if va is not None:
                assert abs(va - vb) <= 1e-9 * max(1.0, abs(va)), (label, va, vb)
        assert ra["answers"]["h"]["noise_sd"] == rb["answers"]["h"]["noise_sd"]
