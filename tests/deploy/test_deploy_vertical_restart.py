"""A vertical job whose server is SIGKILLed mid-job: recorded in the job store, shown failed
with the reason after the restart, and run again with one command (`fedsilo submit --restart`);
the finished job's status (trees done, the last tree's seconds, held-out metrics) is the same
after another restart.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fedsilo.deploy.proto import fedsilo_pb2 as pb
from tests.deploy.harness import ADMIN_TOKEN, FAST, SOURCES, deployment, job_done
from tests.deploy.test_deploy_vertical import PARTIES, _files, _job

pytestmark = pytest.mark.slow

TREES = 4
JOB = _job(
    "secureboost",
    "paillier",
    f"[secureboost]\nn_trees = {TREES}\nmax_depth = 2\nlearning_rate = 0.3\nn_bins = 16\n",
)


def test_vertical_job_killed_with_its_server_is_failed_with_reason_and_restarts(
    tmp_path: Path,
) -> None:
    files = _files(tmp_path)
    with deployment(tmp_path, parties=PARTIES) as dep:
        dep.start_vertical(files)
        job_id = dep.submit(JOB)

        def mid_job(reply: object) -> bool:
            job = next(j for j in reply.jobs if j.job_id == job_id)  # type: ignore[attr-defined]
            assert job.status != "done", "the job ended before the server could be killed"
            return bool(job.status == "running" and job.round >= 1)

        running = dep.wait_status(mid_job)
        seen = next(j for j in running.jobs if j.job_id == job_id)
        assert seen.kind == "vertical" and seen.round_s > 0  # the last tree's seconds
        dep.kill("server")  # SIGKILL after at least one tree
        dep.start_server()

        def failed(reply: object) -> bool:
            job = next((j for j in reply.jobs if j.job_id == job_id), None)  # type: ignore[attr-defined]
            return job is not None and job.status == "failed"

        after = dep.wait_status(failed)
        error = next(j for j in after.jobs if j.job_id == job_id).error
        assert "server stopped during this vertical job" in error
        assert f"fedsilo submit --restart {job_id}" in error

        tls = ["--ca", str(dep.root / "ca" / "ca.pem"), "--cert", str(dep.certs / "admin.pem")]
        tls += ["--key", str(dep.certs / "admin.key")]
        command = ["submit", "--restart", job_id, "--server", dep.address, *tls]
        cli = subprocess.run(
            [sys.executable, "-m", "fedsilo.cli", *command],
            capture_output=True,
            text=True,
            env={**os.environ, **FAST, "FEDSILO_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONPATH": SOURCES},
            timeout=240,
        )
        assert cli.returncode == 0, cli.stderr
        new_id = cli.stdout.strip().splitlines()[-1]
        assert new_id != job_id
        finished = _job(dep.wait_status(job_done(new_id)), new_id)
        dep.kill("server")
        dep.start_server()
        again = _job(dep.wait_status(lambda s: any(j.job_id == new_id for j in s.jobs)), new_id)

    doc = json.loads((tmp_path / "server" / new_id / "metrics.json").read_text())
    assert doc["vertical"]["n_trees"] == TREES and len(doc["history"]) == TREES
    # status shows the trees done and the held-out metrics, and a restart keeps them
    assert (finished.round, finished.rounds) == (TREES, TREES)
    assert finished.round_s == doc["history"][-1]["duration_s"]
    assert dict(finished.metrics) == pytest.approx(doc["final"]["global"])
    assert {"auc", "accuracy", "loss"} <= set(finished.metrics)
    assert (again.status, again.round, again.round_s) == ("done", TREES, finished.round_s)
    assert dict(again.metrics) == dict(finished.metrics)
    with sqlite3.connect(tmp_path / "server" / "state.sqlite") as db:
        rows = dict(db.execute("SELECT id, status || ':' || kind FROM jobs").fetchall())
    assert rows == {job_id: "failed:vertical", new_id: "done:vertical"}


def _job(reply: pb.StatusReply, job_id: str) -> pb.JobStatus:
    return next(j for j in reply.jobs if j.job_id == job_id)
