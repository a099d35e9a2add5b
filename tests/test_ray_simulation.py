"""Simulated parties on Ray (`fedsilo simulate --ray`, issue 15 item 3): the same model as
in-process for the same job and seed, and the transport's failure reasons.

One local Ray (2 CPUs, no dashboard) for the module; start-up costs a few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.errors import ConfigError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.ray_simulation import RayTransport
from fedsilo.simulation import simulate
from tests.ray_hosts import Misbehaving

JOB = {
    "name": "on-ray",
    "seed": 7,
    "rounds": 3,
    "data": {"dataset": "breast-cancer", "num_parties": 4},
    "model": {"name": "mlp", "hidden": [8]},
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _same_run(a: dict[str, Path], b: dict[str, Path]) -> None:
    """The same model bytes, and the same history (metrics, sampled parties) and final rows."""
    assert a["model"].read_bytes() == b["model"].read_bytes()
    docs = [json.loads(p["metrics_json"].read_text()) for p in (a, b)]
    for doc in docs:
        for entry in doc["history"]:
            entry.pop("duration_s", None)
    assert docs[0]["history"] == docs[1]["history"]
    assert docs[0]["final"] == docs[1]["final"]


def test_simulate_ray_gives_the_in_process_model_bit_for_bit(
    local_ray: None, tmp_path: Path
) -> None:
    # Arrange: 4 parties on 2 hosts (two parties each), 3 of 4 sampled per round, under secure
    # aggregation: every party signs with the key the driver made and checks its neighbours'
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "on-ray"\nseed = 7\nrounds = 3\n'
        '[data]\ndataset = "breast-cancer"\nnum_parties = 4\npartition = "dirichlet"\n'
        "alpha = 1.0\n"
        '[model]\nname = "mlp"\nhidden = [8]\n'
        "[training]\nepochs = 1\nbatch_size = 16\nlearning_rate = 0.1\n"
        "[selection]\nfraction = 0.75\nmin_parties = 2\n"
        "[privacy.secure_aggregation]\nenabled = true\n"
    )

    # Act: the command line on Ray, the API in this process
    done = CliRunner().invoke(
        app, ["simulate", str(job), "--ray", "auto", "--out", str(tmp_path / "ray")]
    )
    assert done.exit_code == 0, done.output
    in_process = simulate(job, audit_dir=tmp_path / "local" / "audit").save(tmp_path / "local")

    # Assert: the same model bytes, history (metrics, sampled parties) and final rows
    assert "parties on Ray (auto)" in done.output
    on_ray = {
        "model": tmp_path / "ray" / "model.safetensors",
        "metrics_json": tmp_path / "ray" / "metrics.json",
    }
    _same_run(on_ray, in_process)
    history = json.loads(on_ray["metrics_json"].read_text())["history"]
    assert [len(h["parties"]) for h in history] == [3, 3, 4]  # sampled; all at the end
    # each party kept its audit log where the run directory says, written by its Ray host
    logs = sorted(p.name for p in (tmp_path / "ray" / "audit").glob("*.jsonl"))
    assert logs == [f"party-{i}.jsonl" for i in (1, 2, 3, 4)]


def test_ray_refuses_a_vertical_job_and_forced_vectorization(local_ray: None) -> None:
    vertical = Path(__file__).parents[1] / "examples" / "vertical_breast_cancer" / "job.toml"
    refused = CliRunner().invoke(app, ["simulate", str(vertical), "--ray", "auto"])
    assert refused.exit_code == 2
    assert "--ray runs horizontal jobs" in refused.output
    with pytest.raises(ConfigError, match="vectorize"):
        simulate({**JOB, "simulation": {"vectorize": "on"}}, ray="auto")


def test_ray_transport_names_every_missing_reply(local_ray: None) -> None:
    # Arrange: one host answering for the honest, slow, impostor and garbage parties (four
    # calls at once), and a host that died
    actor = ray.remote(num_cpus=0, max_concurrency=4)(Misbehaving)
    host, dead = actor.remote(), actor.remote()
    ray.get([host.__ray_ready__.remote(), dead.__ray_ready__.remote()])  # both started
    ray.kill(dead)
    names = ("honest", "slow", "impostor", "garbage")
    transport = RayTransport({**dict.fromkeys(names, host), "dead": dead})
    tasks = {
        name: Message(TaskKind.DESCRIBE, "job", 0, "coordinator")
        for name in ("honest", "slow", "impostor", "garbage", "dead", "absent")
    }

    # Act
    started = time.monotonic()
    gathered = transport.exchange(tasks, timeout_s=3.0)

    # Assert: only the honest reply counts, each other party has its reason, the deadline held
    assert time.monotonic() - started < 20
    assert list(gathered.replies) == ["honest"]
    why = gathered.failures
    assert why["slow"] == "no reply within the 3 s deadline"
    assert why["impostor"] == "reply claims to be from 'someone-else'"
    assert why["absent"] == "not connected"
    assert why["dead"].startswith("party failed on Ray: ")
    assert why["garbage"]  # the decoder's reason
    assert set(why) == {"slow", "impostor", "garbage", "dead", "absent"}
    assert transport.party_names() == ["dead", "garbage", "honest", "impostor", "slow"]
