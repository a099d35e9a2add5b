"""Secure aggregation over real party processes for several rounds: the simulation's model.

Each party process keeps one secure-aggregation session for the job (its channel key,
checked by its neighbours in round 1) and fresh mask keys and masks every round; the
deployed job gives the in-process simulation's model bit for bit (masks cancel exactly in
the ring, and quantization and training are seeded alike).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from fedsilo.simulation import simulate
from tests.deploy.harness import deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow

SECURE = "\n[privacy.secure_aggregation]\nenabled = true\n"


def test_deployed_secure_aggregation_job_equals_the_simulation(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_toml(csvs, rounds=3) + SECURE)
    expected = simulate(job_file)
    assert [len(r.participants) for r in expected.history] == [3, 3, 3]

    with deployment(tmp_path) as dep:
        dep.start_horizontal(csvs)
        job_id = dep.submit(job_file.read_text())
        status = dep.wait_status(job_done(job_id))

    job = next(j for j in status.jobs if j.job_id == job_id)
    assert job.round == 3
    got = load_file(str(Path(job.run_dir) / "model.safetensors"))
    assert sorted(got) == sorted(expected.params)
    for name, value in expected.params.items():
        assert np.array_equal(got[name], value), name
