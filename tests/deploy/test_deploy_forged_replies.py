"""A malicious party process over real gRPC: NaN fit bodies and forged evaluations are refused.

org-x is the real party code in its own process with every reply rewritten on the way out
(tests/deploy/forging_party.py). The deployment has no central test set, so the published
global metrics are the merge of the parties' evaluation statistics: the forged statistics would
move them (the issue saw accuracy 1.0 with loss 0.0, then 1.0057 with loss -0.018). Each forged
reply is refused with a logged reason naming party, round and field; the job finishes with the
honest parties; metrics.json holds no NaN and the report and the job store agree it is done.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import FAST, _pythonpath, deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow

HONEST = ("org-a", "org-b")
FORGER = "org-x"
SCRIPT = Path(__file__).with_name("forging_party.py")


def no_nan(text: str) -> dict[str, Any]:
    def refuse(token: str) -> None:
        raise AssertionError(f"metrics.json holds {token}")

    return dict(json.loads(text, parse_constant=refuse))


def test_nan_and_forged_evaluations_are_refused_and_the_job_finishes(tmp_path: Path) -> None:
    parties = (*HONEST, FORGER)
    csvs = write_party_csvs(tmp_path, parties)
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_toml(csvs, rounds=6, min_parties=2, timeout_s=30))

    with deployment(tmp_path, parties=parties) as dep:
        dep.make_pki()
        dep.write_server(liveness_s=15)  # a loaded machine must not drop an honest party
        for p in parties:
            dep.write_party(p, csvs[p])
        dep.start_server()
        for p in HONEST:
            dep.start_party(p)
        log = (tmp_path / f"{FORGER}.log").open("ab")
        dep.procs[FORGER] = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(tmp_path / f"{FORGER}.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **FAST, "PYTHONPATH": _pythonpath()},
        )
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3, timeout_s=240)
        job_id = dep.submit(job_file.read_text())
        status = dep.wait_status(job_done(job_id), timeout_s=240)
        server_log = dep.log("server")
        forger_log = dep.log(FORGER)

    assert "forged evaluate round 6" in forger_log  # the forgeries did go out
    job = next(j for j in status.jobs if j.job_id == job_id)
    assert job.status == "done" and not job.error
    run_dir = Path(job.run_dir)
    metrics = no_nan((run_dir / "metrics.json").read_text())
    rounds = {r["round"]: r for r in metrics["history"]}
    assert sorted(rounds) == [1, 2, 3, 4, 5, 6]

    # fit: NaN (round 1) and Infinity (round 2) refused like lost replies, then honest again
    for rnd in (1, 2):
        assert rounds[rnd]["participants"] == list(HONEST)
        assert "fit field 'train_loss' is NaN or infinite" in rounds[rnd]["failures"][FORGER]
        assert f"party '{FORGER}' round {rnd}: fit field 'train_loss'" in server_log
    for rnd in (3, 4, 5, 6):
        assert rounds[rnd]["participants"] == sorted(parties)

    # evaluate: every forged evaluation refused, naming the field
    expected = {
        3: "evaluate field 'metrics.accuracy' is NaN",
        4: "evaluate field 'num_examples' is 1000000",
        5: "evaluate field 'metrics.loss' is invalid",
        # the honest count and statistics, perfect metrics: the statistics give it away
        6: "evaluate field 'metrics.",
    }
    for rnd, field in expected.items():
        assert sorted(rounds[rnd]["parties"]) == list(HONEST)
        assert field in rounds[rnd]["failures"][FORGER]
        assert f"party '{FORGER}' round {rnd}: {field}" in server_log
    assert "its statistics imply" in rounds[6]["failures"][FORGER]
    for rnd in (1, 2):  # its honest evaluations count
        assert sorted(rounds[rnd]["parties"]) == sorted(parties)

    # the published global metrics are the merge of the accepted evaluations, nothing forged
    holdout = {p: s["holdout_examples"] for p, s in metrics["data"]["parties"].items()}
    for r in rounds.values():
        total = sum(holdout[p] for p in r["parties"])
        for name in ("accuracy", "loss"):
            weighted = sum(m[name] * holdout[p] for p, m in r["parties"].items()) / total
            assert r["global"][name] == pytest.approx(weighted, rel=1e-9)
        assert 0.0 <= r["global"]["accuracy"] <= 1.0 and r["global"]["loss"] >= 0.0

    # the report and the job store say what the server says
    assert (run_dir / "report.html").is_file() and (run_dir / "model.safetensors").is_file()
    with sqlite3.connect(tmp_path / "server" / "state.sqlite") as db:
        (stored,) = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert stored == "done"
