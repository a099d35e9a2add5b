"""A record-DP job over real party processes: party.toml [privacy] budget and audit log.

Each party builds its own PartyPrivacy from party.toml; org-c's budget is too small for even
one round, so it refuses every fit and the job continues without it (on_exhausted =
"continue"). Every party's audit log verifies and has one line per reply the party sent; it
agrees with the signed anchors the server kept in its job store and with the party's own copy
in its ledger, and a log cut short is reported against both while the ledger's spend stays.
When every party's budget is spent, the job fails at once naming them, without a retry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedsilo.privacy.ledger import Budget, PrivacyLedger
from tests.deploy.harness import (
    FAST,
    PARTIES,
    deployment,
    job_done,
    job_toml,
    loose_modes,
    write_party_csvs,
)

pytestmark = pytest.mark.slow

ROUNDS = 3
RECORD_DP = """
[privacy]
delta = 1e-3

[privacy.record_dp]
enabled = true
noise_multiplier = 1.0
max_grad_norm = 1.0

[privacy.budget]
on_exhausted = "continue"
"""


def _audit_verify(path: Path, *anchors: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli", "audit", "verify", str(path), *anchors],
        capture_output=True,
        text=True,
        env={**os.environ, **FAST},
        timeout=60,
    )


def test_deployed_record_dp_job_with_party_budgets_and_audit_logs(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    job_text = job_toml(csvs, rounds=ROUNDS) + RECORD_DP

    with deployment(tmp_path) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            budget = "0.01" if p == "org-c" else "50.0"
            dep.write_party(
                p,
                csvs[p],
                extra=f'\n[privacy]\nmax_epsilon = {budget}\naudit_log = "audit/{p}.jsonl"\n',
            )
            dep.start_party(p)
        dep.start_server()
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3)
        job_id = dep.submit(job_text)
        status = dep.wait_status(job_done(job_id))
        dep.stop_all()  # every reply is pushed and logged before we count
        party_logs = {p: dep.log(p) for p in PARTIES}

    # every file the server and the parties wrote is private: 0600 in 0700 directories
    written = [tmp_path / "server", tmp_path / "audit", *tmp_path.glob("privacy-*.sqlite*")]
    assert len(written) >= 5 and (tmp_path / "server" / "state.sqlite").is_file()
    assert any((tmp_path / "server").rglob("*.safetensors"))  # checkpoints and the model
    assert loose_modes(*written) == []

    job = next(j for j in status.jobs if j.job_id == job_id)
    assert job.round == ROUNDS
    metrics = json.loads((Path(job.run_dir) / "metrics.json").read_text())
    assert metrics  # the results were written

    for p in PARTIES:
        audit = tmp_path / "audit" / f"{p}.jsonl"  # relative to party.toml's directory
        check = _audit_verify(audit)
        assert check.returncode == 0, f"{p}: {check.stdout}{check.stderr}"
        lines = [json.loads(x) for x in audit.read_text().splitlines() if x.strip()]
        tasks = re.findall(r"party \S+: \S+ task, round", party_logs[p])
        assert len(lines) == len(tasks) > 0, p  # one line per reply sent
        fits = [e for e in lines if e.get("kind") == "fit"]
        assert len(fits) >= ROUNDS, p
        refused = [e for e in fits if e.get("error_code") == "budget_exhausted"]
        if p == "org-c":
            assert refused and len(refused) == len(fits)  # refuses every round
        else:
            assert not refused
            spent = [e["dp"]["epsilon"] for e in fits if e.get("dp")]
            assert len(spent) == len(fits) and spent == sorted(spent) and spent[-1] < 50.0

    # anchors: the server's copy (job store) and the party's own (its ledger, default path)
    store = tmp_path / "server" / "state.sqlite"
    for p in PARTIES:
        audit, ledger = tmp_path / "audit" / f"{p}.jsonl", tmp_path / f"privacy-{p}.sqlite"
        for anchors in (store, ledger):
            check = _audit_verify(audit, "--anchors", str(anchors))
            assert check.returncode == 0 and "signed anchors agree" in check.stdout, (
                f"{p}: {check.stdout}{check.stderr}"
            )
    charged = PrivacyLedger(tmp_path / "privacy-org-a.sqlite", "org-a")
    before = charged.spent(Budget(None, 1e-5))
    assert len(charged.entries()) >= ROUNDS and before > 0  # one event per DP-SGD round
    audit = tmp_path / "audit" / "org-a.jsonl"
    audit.write_text("".join(x + "\n" for x in audit.read_text().splitlines()[:-3]))
    for anchors in (store, tmp_path / "privacy-org-a.sqlite"):
        check = _audit_verify(audit, "--anchors", str(anchors))
        assert check.returncode == 2 and "cut off the end" in check.stderr, check.stdout
    assert charged.spent(Budget(None, 1e-5)) == before


def _failed(job_id: str) -> Callable[[Any], bool]:
    def check(reply: Any) -> bool:
        job = next((j for j in reply.jobs if j.job_id == job_id), None)
        return job is not None and job.status == "failed"

    return check


def test_deployed_job_stops_at_once_when_every_party_budget_is_spent(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    job_text = job_toml(csvs, rounds=ROUNDS) + RECORD_DP  # max_round_retries = 1

    with deployment(tmp_path) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            dep.write_party(
                p,
                csvs[p],
                extra=f'\n[privacy]\nmax_epsilon = 0.01\naudit_log = "audit/{p}.jsonl"\n',
            )
            dep.start_party(p)
        dep.start_server()
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3)
        job_id = dep.submit(job_text)
        status = dep.wait_status(_failed(job_id))
        dep.stop_all()

    error = next(j for j in status.jobs if j.job_id == job_id).error
    assert error.startswith("BudgetExhaustedError: round 1: the job stops: parties "), error
    assert "'org-a', 'org-b' and 'org-c' have spent their privacy budget" in error
    assert "not retried" in error and "attempt" not in error
    for p in PARTIES:  # each party was asked once and refused once: no retry
        lines = [
            json.loads(x) for x in (tmp_path / "audit" / f"{p}.jsonl").read_text().splitlines()
        ]
        fits = [e for e in lines if e.get("kind") == "fit"]
        assert [e.get("error_code") for e in fits] == ["budget_exhausted"], p
