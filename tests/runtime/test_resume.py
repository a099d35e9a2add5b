"""A coordinator restarted on its job store continues the job exactly where it stopped."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsilo.aggregation import ServerOptimizer
from fedsilo.config import JobConfig, parse_job
from fedsilo.errors import ConfigError, RoundFailedError, StoreError
from fedsilo.models import Params
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.results import Result
from fedsilo.runtime.coordinator import Coordinator, RoundRecord, TrainingOutcome
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.store import JobStatus, JobStore, canonical_config
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.simulation import load_simulated_data
from tests.conftest import small_job

JOB_ID = "job-1"


class Crash(Exception):
    """Stands for the coordinator process dying."""


class Flaky:
    """In-process transport that crashes, or loses every party, at one round's fit."""

    def __init__(self, inner: InProcessTransport, *, at_round: int, mode: str) -> None:
        self.inner, self.at_round, self.mode = inner, at_round, mode
        self.fit_rounds: list[int] = []

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        first = next(iter(tasks.values()), None)
        if first is not None and first.kind is TaskKind.FIT:
            self.fit_rounds.append(first.round)
            if first.round == self.at_round:
                if self.mode == "crash":
                    raise Crash(f"coordinator died in round {first.round}")
                return Gathered({}, {p: "not connected" for p in tasks})
        return self.inner.exchange(tasks, timeout_s=timeout_s)


def job_config(**overrides: Any) -> JobConfig:
    # 4 parties, half of them per round: selection randomness matters for the resumed rounds.
    defaults: dict[str, Any] = {
        "rounds": 5,
        "data": {"num_parties": 4},
        "selection": {"fraction": 0.5, "min_parties": 2, "max_round_retries": 0},
    }
    raw = small_job(**{**defaults, **overrides})
    return parse_job(raw, source="test")


def transport(job: JobConfig) -> InProcessTransport:
    """Fresh party agents, as after a restart of every process."""
    sim = load_simulated_data(job)
    return InProcessTransport({n: PartyAgent(n, d) for n, d in sim.parties.items()})


_REFERENCES: dict[str, TrainingOutcome] = {}


def uninterrupted(job: JobConfig) -> TrainingOutcome:
    """The job run start to finish without a store (computed once per config)."""
    key = canonical_config(job)
    if key not in _REFERENCES:
        _REFERENCES[key] = Coordinator(job, transport(job)).run()
    return _REFERENCES[key]


def assert_same_params(a: Params, b: Params) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert np.array_equal(a[name], b[name]), name


def same_rounds(a: list[RoundRecord], b: list[RoundRecord]) -> None:
    assert [r.round for r in a] == [r.round for r in b] == [1, 2, 3, 4, 5]
    for x, y in zip(a, b, strict=True):
        assert x.participants == y.participants
        assert x.train_loss == y.train_loss
        assert x.global_metrics == y.global_metrics
        assert x.party_metrics == y.party_metrics


def interrupted_then_resumed(job: JobConfig, tmp_path: Path) -> tuple[TrainingOutcome, JobStore]:
    store = JobStore(tmp_path / "store.db")

    def stop_after_round_2(record: RoundRecord) -> None:
        if record.round == 2:
            raise Crash("killed after round 2")

    first = Coordinator(
        job, transport(job), store=store, job_id=JOB_ID, on_round=stop_after_round_2
    )
    with pytest.raises(Crash):
        first.run()
    last = store.last_round(JOB_ID)
    assert last is not None and last.round == 2 and last.checkpoint.is_file()
    assert store.job(JOB_ID).status is JobStatus.RUNNING
    store.close()

    store = JobStore(tmp_path / "store.db")  # the restarted process opens the file again
    seen: list[int] = []
    resumed = Coordinator(
        job, transport(job), store=store, job_id=JOB_ID, on_round=lambda r: seen.append(r.round)
    ).run()
    assert seen == [3, 4, 5]  # only the rounds it ran itself
    return resumed, store


@pytest.mark.parametrize("server_optimizer", ["sgd", "adam"])
def test_resumed_job_equals_uninterrupted_job_bit_for_bit(
    tmp_path: Path, server_optimizer: str
) -> None:
    job = job_config(
        aggregation={"server_optimizer": server_optimizer, "server_learning_rate": 0.3}
    )
    reference = uninterrupted(job)
    resumed, store = interrupted_then_resumed(job, tmp_path)
    assert_same_params(resumed.params, reference.params)
    same_rounds(resumed.history, reference.history)
    assert store.job(JOB_ID).status is JobStatus.DONE
    assert [r.round for r in store.rounds(JOB_ID)] == [1, 2, 3, 4, 5]
    # The results cover all five rounds, the two before the restart included.
    metrics = Result(job, resumed.setup, resumed.params, resumed.history, None, 0.0).metrics_json()
    expected = Result(job, reference.setup, reference.params, reference.history, None, 0.0)
    assert [r["train_loss"] for r in metrics["history"]] == [
        r["train_loss"] for r in expected.metrics_json()["history"]
    ]


def test_resume_without_the_server_optimizer_state_would_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the equality above needs the restored adam moments."""
    job = job_config(aggregation={"server_optimizer": "adam", "server_learning_rate": 0.3})
    reference = uninterrupted(job)
    monkeypatch.setattr(ServerOptimizer, "load_state_dict", lambda self, state: None)
    resumed, _ = interrupted_then_resumed(job, tmp_path)
    assert any(not np.array_equal(resumed.params[k], reference.params[k]) for k in resumed.params)


def test_crash_inside_a_round_resumes_from_the_last_completed_round(tmp_path: Path) -> None:
    job = job_config(aggregation={"server_optimizer": "yogi", "server_learning_rate": 0.1})
    reference = uninterrupted(job)
    store = JobStore(tmp_path / "store.db")
    crashing = Flaky(transport(job), at_round=3, mode="crash")
    with pytest.raises(Crash):
        Coordinator(job, crashing, store=store, job_id=JOB_ID).run()
    assert crashing.fit_rounds == [1, 2, 3]
    again = Flaky(transport(job), at_round=0, mode="crash")
    resumed = Coordinator(job, again, store=store, job_id=JOB_ID).run()
    assert again.fit_rounds == [3, 4, 5]
    assert_same_params(resumed.params, reference.params)


def test_failed_job_is_recorded_and_can_be_retried(tmp_path: Path) -> None:
    job = job_config()
    reference = uninterrupted(job)
    store = JobStore(tmp_path / "store.db")
    lost = Flaky(transport(job), at_round=4, mode="lose")
    with pytest.raises(RoundFailedError, match="round 4"):
        Coordinator(job, lost, store=store, job_id=JOB_ID).run()
    row = store.job(JOB_ID)
    assert row.status is JobStatus.FAILED and row.finished_at is not None
    assert row.error is not None and "round 4" in row.error
    resumed = Coordinator(job, transport(job), store=store, job_id=JOB_ID).run()
    assert store.job(JOB_ID).status is JobStatus.DONE
    assert_same_params(resumed.params, reference.params)


def test_finished_job_is_not_trained_again(tmp_path: Path) -> None:
    job = job_config(rounds=2)
    store = JobStore(tmp_path / "store.db")
    done = Coordinator(job, transport(job), store=store, job_id=JOB_ID).run()
    counting = Flaky(transport(job), at_round=0, mode="crash")
    again = Coordinator(job, counting, store=store, job_id=JOB_ID).run()
    assert counting.fit_rounds == []
    assert_same_params(again.params, done.params)
    assert [r.round for r in again.history] == [1, 2]


def _stop_at_2(job: JobConfig, store: JobStore) -> Path:
    def stop(record: RoundRecord) -> None:
        if record.round == 2:
            raise Crash

    with pytest.raises(Crash):
        Coordinator(job, transport(job), store=store, job_id=JOB_ID, on_round=stop).run()
    last = store.last_round(JOB_ID)
    assert last is not None
    return last.checkpoint


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("delete", "is missing"),
        ("flip", "is corrupt"),
        ("truncate", "is corrupt"),
    ],
)
def test_damaged_checkpoint_gives_an_error_naming_the_file(
    tmp_path: Path, damage: str, message: str
) -> None:
    job = job_config()
    store = JobStore(tmp_path / "store.db")
    checkpoint = _stop_at_2(job, store)
    assert checkpoint == tmp_path / "checkpoints" / JOB_ID / "round-0002.safetensors"
    data = checkpoint.read_bytes()
    if damage == "delete":
        checkpoint.unlink()
    elif damage == "flip":
        checkpoint.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=message) as exc:
        Coordinator(job, transport(job), store=store, job_id=JOB_ID).run()
    assert str(checkpoint) in str(exc.value) and "round 2" in str(exc.value)
    assert store.job(JOB_ID).status is JobStatus.RUNNING  # restore the file and run again
    checkpoint.write_bytes(data)
    resumed = Coordinator(job, transport(job), store=store, job_id=JOB_ID).run()
    assert len(resumed.history) == 5


def test_resume_with_a_different_config_is_refused(tmp_path: Path) -> None:
    job = job_config()
    store = JobStore(tmp_path / "store.db")
    _stop_at_2(job, store)
    other = job_config(seed=99)
    with pytest.raises(ConfigError, match=r"different configuration \(differs in: seed\)"):
        Coordinator(other, transport(other), store=store, job_id=JOB_ID).run()
    assert store.job(JOB_ID).status is JobStatus.RUNNING


def test_a_store_needs_a_job_id(tmp_path: Path) -> None:
    job = job_config()
    with pytest.raises(ConfigError, match="job_id"):
        Coordinator(job, transport(job), store=JobStore(tmp_path / "s.db"))


def test_a_job_whose_results_cannot_be_written_is_never_recorded_done(tmp_path: Path) -> None:
    job = job_config(rounds=2)
    store = JobStore(tmp_path / "store.db")

    def disk_full(outcome: TrainingOutcome) -> None:
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        Coordinator(job, transport(job), store=store, job_id=JOB_ID).run(before_done=disk_full)
    assert store.job(JOB_ID).status is JobStatus.RUNNING  # a crash: resumable, never "done"
    saved: list[TrainingOutcome] = []
    again = Coordinator(job, transport(job), store=store, job_id=JOB_ID)
    again.run(before_done=saved.append)
    assert store.job(JOB_ID).status is JobStatus.DONE
    assert [r.round for r in saved[0].history] == [1, 2]
