"""The job store: schema, reopening, WAL readers, status rules; round checkpoints."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from fedsilo.config import parse_job
from fedsilo.errors import StoreError
from fedsilo.runtime.checkpoint import load_checkpoint, save_checkpoint
from fedsilo.runtime.coordinator import RoundRecord
from fedsilo.runtime.store import SCHEMA_VERSION, JobStatus, JobStore, new_job_id
from tests.conftest import small_job

JOB = parse_job(small_job(), source="test")


def record(rnd: int) -> RoundRecord:
    return RoundRecord(
        round=rnd,
        participants=["party-1", "party-2"],
        failures={"party-3": "not connected"},
        global_metrics={"accuracy": 0.9 + rnd / 100, "auc": float("nan")},
        party_metrics={"party-1": {"loss": 0.1 * rnd}, "party-2": {"loss": 1 / 3}},
        train_loss=0.123456789012345,
        duration_s=0.5,
        attempts=2,
        privacy={"epsilon": 1.5},
    )


def checkpoint(store: JobStore, job_id: str, rnd: int) -> tuple[Path, str]:
    path = store.path.parent / "ckpt" / f"{job_id}-{rnd}.safetensors"
    params = {"w": np.full((2, 3), rnd, dtype=np.float32)}
    return path, save_checkpoint(path, params, {}, job_id=job_id, round=rnd)


def test_new_store_has_the_versioned_schema_in_wal_mode(tmp_path: Path) -> None:
    JobStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"jobs", "parties", "rounds", "anchors"}


def test_a_version_1_store_gains_the_anchors_table(tmp_path: Path) -> None:
    JobStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("DROP TABLE anchors")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with JobStore(tmp_path / "s.db") as store:
        assert store.anchors() == []
        store.record_anchor("j", "p", 1, {"entries": 3, "party": "p"})
        assert store.anchors("p") == [{"entries": 3, "party": "p"}]


def test_a_version_2_store_gains_job_kinds_and_keeps_its_jobs(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")  # the layout before vertical jobs were stored
    for statement in (
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, config_text TEXT NOT NULL,"
        " config_json TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,"
        " created_at REAL NOT NULL, finished_at REAL)",
        "CREATE TABLE parties (name TEXT PRIMARY KEY, last_seen REAL, status TEXT)",
        "CREATE TABLE rounds (job_id TEXT, round INTEGER, record TEXT, checkpoint TEXT,"
        " sha256 TEXT, finished_at REAL)",
        "CREATE TABLE anchors (id INTEGER PRIMARY KEY, job_id TEXT, party TEXT, round INTEGER,"
        " entries INTEGER, anchor TEXT, received_at REAL)",
        "INSERT INTO jobs VALUES ('old', 'small', 'x', 'x', 3, 'done', NULL, 1.0, 2.0)",
        "PRAGMA user_version = 2",
    ):
        db.execute(statement)
    db.commit()
    db.close()
    with JobStore(tmp_path / "s.db") as store:
        (row,) = store.jobs()
        assert (row.id, row.status, row.kind) == ("old", JobStatus.DONE, "horizontal")


def test_reopened_store_keeps_jobs_rounds_and_parties(tmp_path: Path) -> None:
    with JobStore(tmp_path / "s.db") as store:
        created = store.create_job("j1", JOB, config_text='name = "small"\n')
        path, digest = checkpoint(store, "j1", 1)
        store.record_round("j1", record(1), path, digest)
        store.party_seen("party-1", at=100.0)
        store.party_seen("party-1", "offline", at=200.0)
    with JobStore(tmp_path / "s.db") as store:
        row = store.job("j1")
        assert row == created
        assert (row.name, row.seed, row.status) == ("small", 3, JobStatus.RUNNING)
        assert row.config_text == 'name = "small"\n'
        assert row.job() == JOB
        rounds = store.rounds("j1")
        assert len(rounds) == 1 and rounds[0].checkpoint == path and rounds[0].sha256 == digest
        got, want = rounds[0].record, record(1)
        assert got.to_json().keys() == want.to_json().keys()
        assert np.isnan(got.global_metrics.pop("auc"))
        assert got.global_metrics == {"accuracy": want.global_metrics["accuracy"]}
        assert (got.party_metrics, got.train_loss, got.privacy) == (
            want.party_metrics,
            want.train_loss,
            want.privacy,
        )
        assert [(p.name, p.last_seen, p.status) for p in store.parties()] == [
            ("party-1", 200.0, "offline")
        ]


def test_checkpoint_paths_are_kept_relative_so_the_run_directory_can_move(tmp_path: Path) -> None:
    with JobStore(tmp_path / "a" / "s.db") as store:
        store.create_job("j1", JOB)
        store.record_round("j1", record(1), *checkpoint(store, "j1", 1))
    (tmp_path / "a").rename(tmp_path / "b")
    with JobStore(tmp_path / "b" / "s.db") as store:
        last = store.last_round("j1")
        assert last is not None and last.checkpoint == tmp_path / "b" / "ckpt" / "j1-1.safetensors"
        assert last.checkpoint.is_file()


def test_reader_is_not_blocked_by_and_does_not_block_the_writer(tmp_path: Path) -> None:
    writer = JobStore(tmp_path / "s.db")
    writer.create_job("j1", JOB)
    reader = sqlite3.connect(tmp_path / "s.db", timeout=0.2, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM rounds").fetchone()[0] == 0  # snapshot taken
    # With a rollback journal this commit would wait for the reader and fail "database is
    # locked"; under WAL it goes through and the reader keeps its consistent snapshot.
    writer.record_round("j1", record(1), *checkpoint(writer, "j1", 1))
    writer.set_status("j1", JobStatus.DONE)
    assert reader.execute("SELECT count(*) FROM rounds").fetchone()[0] == 0
    assert reader.execute("SELECT status FROM jobs").fetchone()[0] == "running"
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM rounds").fetchone()[0] == 1
    assert JobStore(tmp_path / "s.db").job("j1").status is JobStatus.DONE


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "s.db")
    store.create_job("j1", JOB)

    def heartbeat(name: str) -> None:
        for i in range(50):
            store.party_seen(name, at=float(i))

    threads = [threading.Thread(target=heartbeat, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for rnd in range(1, 6):
        store.record_round("j1", record(rnd), *checkpoint(store, "j1", rnd))
    for t in threads:
        t.join()
    assert [p.last_seen for p in store.parties()] == [49.0] * 4
    assert [r.round for r in store.rounds("j1")] == [1, 2, 3, 4, 5]
    last = store.last_round("j1")
    assert last is not None and last.round == 5


def test_status_moves_only_along_allowed_transitions(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "s.db")
    store.create_job("a", JOB)
    store.set_status("a", JobStatus.FAILED, error="round 3 got 1 valid update")
    failed = store.job("a")
    assert failed.status is JobStatus.FAILED and failed.error == "round 3 got 1 valid update"
    assert failed.finished_at is not None
    store.set_status("a", JobStatus.RUNNING)  # retried
    assert store.job("a").finished_at is None and store.job("a").error is None
    store.set_status("a", JobStatus.DONE)
    for target in (JobStatus.RUNNING, JobStatus.FAILED, JobStatus.DONE):
        with pytest.raises(StoreError, match=f"'a' is done; it cannot become {target.value}"):
            store.set_status("a", target)
    store.create_job("b", JOB)
    assert [j.id for j in store.jobs()] == ["a", "b"]
    assert [j.id for j in store.jobs(JobStatus.RUNNING)] == ["b"]
    with pytest.raises(StoreError, match="has no job 'c'"):
        store.set_status("c", JobStatus.DONE)


def test_duplicates_and_unwritten_checkpoints_are_refused(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "s.db")
    store.create_job("j1", JOB)
    with pytest.raises(StoreError, match="already has a job 'j1'"):
        store.create_job("j1", JOB)
    with pytest.raises(StoreError, match="must be written before"):
        store.record_round("j1", record(1), tmp_path / "nothing.safetensors", "00")
    store.record_round("j1", record(1), *checkpoint(store, "j1", 1))
    with pytest.raises(StoreError, match="cannot record round 1 of job 'j1'"):
        store.record_round("j1", record(1), *checkpoint(store, "j1", 1))
    with pytest.raises(StoreError, match="cannot record round 1 of job 'zz'"):
        store.record_round("zz", record(1), *checkpoint(store, "zz", 1))  # no such job


def test_files_that_are_not_a_job_store_are_refused_by_name(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=f"{garbage} cannot be opened"):
        JobStore(garbage)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a fedsilo job store"):
        JobStore(other)
    newer = tmp_path / "newer.db"
    JobStore(newer).close()
    sqlite3.connect(newer).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this fedsilo understands"):
        JobStore(newer)


def test_job_ids_are_unique_and_carry_the_name() -> None:
    ids = {new_job_id("credit") for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("credit-") for i in ids)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trips_params_in_order_and_optimizer_state(tmp_path: Path) -> None:
    params = {"z.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(2, "f4")}
    state = {"step": np.array(4, dtype=np.int64), "m": np.linspace(0, 1, 8), "v": np.ones(8)}
    path = tmp_path / "c.safetensors"
    digest = save_checkpoint(path, params, state, job_id="j", round=4)
    template = {k: np.zeros_like(v) for k, v in params.items()}
    got, got_state = load_checkpoint(path, template, job_id="j", round=4, sha256=digest)
    assert list(got) == ["z.weight", "a.bias"]
    for k in params:
        assert got[k].dtype == params[k].dtype and np.array_equal(got[k], params[k])
    assert got_state["step"].shape == () and int(got_state["step"]) == 4
    assert np.array_equal(got_state["m"], state["m"]) and got_state["m"].dtype == np.float64
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_checkpoint_of_another_round_or_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": np.zeros(3, "f4")}, {}, job_id="j", round=2)
    with pytest.raises(StoreError, match=r"job 'j' round 2; the store expects"):
        load_checkpoint(path, {"w": np.zeros(3, "f4")}, job_id="j", round=3)
    with pytest.raises(StoreError, match=r"does not fit this job's model.*shape"):
        load_checkpoint(path, {"w": np.zeros(4, "f4")}, job_id="j", round=2)
    path.write_bytes(b"\xff" * 40)
    with pytest.raises(StoreError, match=f"{path}.*not a readable fedsilo checkpoint"):
        load_checkpoint(path, {"w": np.zeros(3, "f4")}, job_id="j", round=2)
