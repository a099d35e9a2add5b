"""SIGKILL the coordinator mid-job, restart it: the job resumes and ends with the same model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from fedsilo.deploy.config import load_party_config
from fedsilo.deploy.party_process import PartyProcess, load_agent
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Handler
from fedsilo.simulation import simulate
from tests.deploy.harness import PARTIES, deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow

GATED_ROUND = 3


class GatedParty:
    """An honest agent that holds its round-3 fit reply until the test lets it go."""

    def __init__(self, agent: Handler) -> None:
        self._agent = agent
        self.reached = threading.Event()
        self.release = threading.Event()

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        if task.kind is TaskKind.FIT and task.round == GATED_ROUND and not self.reached.is_set():
            self.reached.set()
            self.release.wait(60)
        return self._agent.handle(data)


def test_killed_coordinator_resumes_from_last_round_with_identical_model(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_toml(csvs, rounds=5, timeout_s=30))
    expected = simulate(job_file)

    with deployment(tmp_path) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            dep.write_party(p, csvs[p])
        dep.start_server()
        for p in PARTIES[:2]:
            dep.start_party(p)
        cfg = load_party_config(tmp_path / f"{PARTIES[2]}.toml")
        gated = GatedParty(load_agent(cfg))
        party = PartyProcess(cfg, gated)
        thread = threading.Thread(target=party.run, daemon=True)
        thread.start()
        try:
            dep.wait_status(lambda s: sum(p.online for p in s.parties) == 3)
            job_id = dep.submit(job_file.read_text())
            assert gated.reached.wait(90), dep.log("server")
            dep.kill("server")  # SIGKILL in the middle of round 3
            dep.start_server()
            gated.release.set()
            status = dep.wait_status(job_done(job_id), timeout_s=120)
        finally:
            gated.release.set()
            party.stop()
            thread.join(10)
        server_log = dep.log("server")

    assert f"job {job_id}: resuming after round {GATED_ROUND - 1} of 5" in server_log
    job = next(j for j in status.jobs if j.job_id == job_id)
    got = load_file(str(Path(job.run_dir) / "model.safetensors"))
    for name, value in expected.params.items():
        assert np.array_equal(got[name], value), name
