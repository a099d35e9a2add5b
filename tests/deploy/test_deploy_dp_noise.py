"""Record-DP noise with real party processes: a CSPRNG per party, no reproducible switch.

The same record-DP job (same job seed, same data, same config) runs twice on one deployment:
the two global models differ, because each party draws its DP-SGD noise and sampling from
its own CSPRNG, not from the fit seeds the coordinator sends. A job that asks for
``[privacy] reproducible_noise`` is refused by the deployed parties at setup (their
party.toml has no such switch), and the job fails naming them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.deploy.harness import PARTIES, deployment, job_done, job_toml, write_party_csvs
from tests.deploy.test_deploy_record_dp import RECORD_DP

pytestmark = pytest.mark.slow


def _failed(job_id: str):  # type: ignore[no-untyped-def]
    def check(reply) -> bool:  # type: ignore[no-untyped-def]
        job = next((j for j in reply.jobs if j.job_id == job_id), None)
        return job is not None and job.status == "failed"

    return check


def test_same_job_seed_gives_different_noise_and_parties_refuse_reproducible_noise(
    tmp_path: Path,
) -> None:
    csvs = write_party_csvs(tmp_path)
    job_text = job_toml(csvs, rounds=2) + RECORD_DP
    with deployment(tmp_path) as dep:
        dep.start_horizontal(csvs, extra="\n[privacy]\nmax_epsilon = 50.0\n", timeout_s=300)
        admin = dep.admin()
        first = admin.submit(job_text)
        dep.wait_status(job_done(first), timeout_s=400)
        second = admin.submit(job_text)
        status = dep.wait_status(job_done(second), timeout_s=400)
        refused = admin.submit(
            job_text.replace("delta = 1e-3", "delta = 1e-3\nreproducible_noise = true")
        )
        failed = dep.wait_status(_failed(refused), timeout_s=300)
        admin.close()

    runs = {j.job_id: Path(j.run_dir) for j in status.jobs}
    a, b = (load_file(str(runs[j] / "model.safetensors")) for j in (first, second))
    seeds = {
        json.loads((runs[j] / "metrics.json").read_text())["job"]["seed"] for j in (first, second)
    }
    assert seeds == {11}  # the same job seed
    for j in (first, second):
        assert json.loads((runs[j] / "metrics.json").read_text())["dp_noise"] == "csprng"
    assert set(a) == set(b)
    assert all(not np.array_equal(a[name], b[name]) for name in a)  # every tensor differs

    error = next(j for j in failed.jobs if j.job_id == refused).error
    assert "refuses the job" in error and "reproducible DP noise" in error, error
    assert any(f"party '{p}'" in error for p in PARTIES), error
