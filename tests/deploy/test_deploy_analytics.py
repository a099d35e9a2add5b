"""Federated analytics over the deployment: server + 3 party processes over mTLS.

Each party maps the analytics table to its own CSV in party.toml; the answer must equal the
in-process simulation's (exact without DP; equal with Gaussian DP and a fixed seed), and a
query over a party's own budget (its party.toml, not the job) is refused naming the party.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsilo.analytics.config import QueryPolicy, load_analytics_job
from fedsilo.analytics.run import run_query, simulation_transport
from fedsilo.errors import AdminCallError
from fedsilo.privacy.ledger import LedgerEntry, PrivacyLedger
from tests.deploy.harness import ADMIN_TOKEN, FAST, PARTIES, deployment

pytestmark = pytest.mark.slow

REGIONS = ["north", "south", "east"]
SCHEMA = """table = "loans"
{seed}
[columns.region]
type = "category"
categories = ["north", "south", "east"]

[columns.amount]
type = "number"
lower = 0
upper = 1000

[privacy]
{privacy}
"""
GROUP_BY = "SELECT region, COUNT(*), AVG(amount), SUM(amount) FROM loans GROUP BY region"


def _csvs(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    out = {}
    for i, p in enumerate(PARTIES):
        n = 20 + 5 * i
        frame = pd.DataFrame(
            {
                "region": rng.choice(REGIONS, size=n),
                "amount": rng.uniform(0, 1200, size=n).round(2),  # some values clip
            }
        )
        out[p] = root / f"{p}-loans.csv"
        frame.to_csv(out[p], index=False)
    return out


def _job(root: Path, name: str, csvs: dict[str, Path], privacy: str) -> Path:
    parties = "".join(f'\n[[parties]]\nname = "{p}"\npath = "{c}"\n' for p, c in csvs.items())
    path = root / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n' + SCHEMA.format(seed="seed = 5", privacy=privacy) + parties
    )
    return path


EXACT_OK = QueryPolicy(allow_exact=True)


def _party_privacy(party: str, budget: str) -> str:
    """party.toml [privacy]: the party's own budget (at the job's delta here) and ledger."""
    return f'\n[privacy]\nledger = "ledger-{party}.sqlite"\nmax_epsilon = {budget}\ndelta = 1e-6\n'


def _ledger(root: Path, party: str) -> list[LedgerEntry]:
    return PrivacyLedger(root / f"ledger-{party}.sqlite", party).entries()


def _rows(doc: dict[str, object]) -> object:
    return doc["rows"]


def test_query_over_deployment_equals_simulation_and_party_budget_refuses(
    tmp_path: Path,
) -> None:
    csvs = _csvs(tmp_path)
    exact_job = _job(tmp_path, "loans-exact", csvs, 'mechanism = "none"')
    dp_job = _job(tmp_path, "loans-dp", csvs, 'mechanism = "gaussian"\nepsilon = 1.0')

    def simulated(path: Path) -> dict[str, object]:
        # the simulated parties allow exact answers, like the deployed ones below
        job = load_analytics_job(path).model_copy(update={"policy": EXACT_OK})
        sim = run_query(
            job,
            GROUP_BY,
            transport=simulation_transport(job),
        )
        doc: dict[str, object] = json.loads(json.dumps(sim.to_json()))  # as on the wire
        return doc

    expected_exact, expected_dp = simulated(exact_job), simulated(dp_job)

    with deployment(tmp_path) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            budget = "1.2" if p == "org-c" else "10"
            dep.write_party(
                p,
                csvs[p],  # the training file (unused here): the same CSV
                extra=_party_privacy(p, budget) + f'[analytics.tables]\nloans = "{csvs[p]}"\n'
                "[analytics.policy]\nallow_exact = true\n",
            )
            dep.start_party(p)
        dep.start_server()
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3)

        # the CLI, end to end: no DP, exact
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "fedsilo.cli",
                "query",
                str(exact_job),
                GROUP_BY,
                "--server",
                dep.address,
                "--ca",
                str(dep.root / "ca" / "ca.pem"),
                "--cert",
                str(dep.certs / "admin.pem"),
                "--key",
                str(dep.certs / "admin.key"),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **FAST, "FEDSILO_ADMIN_TOKEN": ADMIN_TOKEN},
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        got_exact = json.loads(cli.stdout)
        assert _rows(got_exact) == _rows(expected_exact)
        assert sum(r["answers"]["COUNT(*)"]["value"] for r in got_exact["rows"]) == 20 + 25 + 30

        # Gaussian DP, seed fixed: the same noise, the same answer
        admin = dep.admin()
        got_dp = json.loads(admin.query(dp_job.read_text(), GROUP_BY, timeout_s=60))
        assert _rows(got_dp) == _rows(expected_dp)
        assert _rows(got_dp) != _rows(got_exact)  # it is noisy
        assert got_dp["privacy"]["epsilon"] == pytest.approx(1.0, rel=1e-3)
        ledger = _ledger(tmp_path, "org-c")
        assert len(ledger) == 1 and ledger[0].what == GROUP_BY

        # a second DP query: the coordinator keeps no ledger and enforces nothing, but org-c's
        # own budget (1.2 in its party.toml) refuses it
        with pytest.raises(AdminCallError) as refused:
            admin.query(dp_job.read_text(), GROUP_BY, timeout_s=60)
        admin.close()
        message = str(refused.value)
        assert "org-c" in message and "budget" in message
        assert "org-a" not in message and "org-b" not in message  # only org-c refused
        assert "org-c refused query" in dep.log("org-c")  # protocol.serve logs the refusal
        assert len(_ledger(tmp_path, "org-c")) == 1  # the refused query is not charged


SECURE = 'mechanism = "gaussian"\nepsilon = 1.0\n\n[privacy.secure_aggregation]\nenabled = true\n'


def test_secure_aggregation_query_over_deployment_equals_simulation(tmp_path: Path) -> None:
    """SecAgg+ over three real party processes: the same answer as in process, bit for bit
    (the masks cancel exactly in Z_2^64, the seeded noise is the same), each party charged
    once in its own ledger."""
    csvs = _csvs(tmp_path)
    job_path = _job(tmp_path, "loans-secure", csvs, SECURE + 'variant = "secagg+"\n')
    job = load_analytics_job(job_path)
    sim = run_query(job, GROUP_BY, transport=simulation_transport(job))
    expected = json.loads(json.dumps(sim.to_json()))
    assert expected["notices"][0].startswith("sums: secure aggregation (SecAgg+)")

    with deployment(tmp_path) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            dep.write_party(
                p,
                csvs[p],
                extra=_party_privacy(p, "10") + f'[analytics.tables]\nloans = "{csvs[p]}"\n',
            )
            dep.start_party(p)
        dep.start_server()
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3)
        admin = dep.admin()
        got = json.loads(admin.query(job_path.read_text(), GROUP_BY, timeout_s=60))
        admin.close()
    assert _rows(got) == _rows(expected)
    assert got["notices"] == expected["notices"]
    for p in PARTIES:
        ledger = _ledger(tmp_path, p)
        assert len(ledger) == 1 and ledger[0].what == GROUP_BY
