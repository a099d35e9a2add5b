"""Server + 3 party processes over TLS/mTLS on 127.0.0.1: same model as the simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from fedsilo.predict import load_model
from fedsilo.simulation import simulate
from tests.deploy.harness import PARTIES, deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow


def _model(run_dir: str) -> dict[str, np.ndarray]:
    return load_file(str(Path(run_dir) / "model.safetensors"))


def test_deployed_job_equals_in_process_simulation(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_toml(csvs, rounds=5))
    expected = simulate(job_file)

    with deployment(tmp_path) as dep:
        dep.start_horizontal(csvs)  # the parties start before the server: they retry
        job_id = dep.submit(job_file.read_text())
        status = dep.wait_status(job_done(job_id))

    job = next(j for j in status.jobs if j.job_id == job_id)
    assert job.round == 5
    got = _model(job.run_dir)
    assert list(got) == list(expected.params) or sorted(got) == sorted(expected.params)
    for name, value in expected.params.items():
        assert np.array_equal(got[name], value), name
    for f in ("metrics.json", "metrics.csv", "report.html"):
        assert (Path(job.run_dir) / f).exists()
    # the deployed job's model file is the simulation's format: it scores rows the same way
    deployed, simulated = (
        load_model(job.run_dir),
        load_model(expected.save(tmp_path / "sim")["model"]),
    )
    assert deployed.meta == simulated.meta
    rows = pd.read_csv(csvs[PARTIES[0]])
    assert np.array_equal(deployed.predict_proba(rows), simulated.predict_proba(rows))
