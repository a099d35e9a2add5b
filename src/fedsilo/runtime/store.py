"""The coordinator's memory: jobs, parties and completed rounds in one SQLite file.

A restarted coordinator reads it to continue a job from its last completed round. Tables:

- ``jobs``: id, name, kind (``horizontal`` or ``vertical``), the config as submitted (usually
  TOML text) and as canonical JSON (what a resume is checked against), seed, status (``running`` → ``done`` | ``failed``; a failed job
  may be set running again to retry), error, created/finished times (Unix seconds).
- ``parties``: name, last_seen, status (whatever the server reports, e.g. online/offline).
- ``rounds``: job id, round, the :class:`RoundRecord` as JSON (per-party metrics inside), the
  checkpoint file (relative to the store's directory when under it) and its SHA-256, finished.
- ``anchors``: each party's signed audit-log heads as they arrived with its replies (job id,
  party, round, entries, the :class:`~fedsilo.privacy.audit.Anchor` as JSON): the copy outside
  the party that ``fedsilo audit verify LOG --anchors state.sqlite`` checks its log against.

Checkpoints are referenced, not stored: the caller writes the file first (atomically), then
records the round, so a recorded round always has its checkpoint. The database runs in WAL mode
(readers never block the writer), and its layout version is ``PRAGMA user_version``.
"""

from __future__ import annotations

import enum
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsilo.config import JobConfig, parse_job
from fedsilo.errors import StoreError

if TYPE_CHECKING:  # the coordinator imports this module; RoundRecord is imported late below
    from fedsilo.runtime.coordinator import RoundRecord
    from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    config_text TEXT NOT NULL,
    config_json TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    error       TEXT,
    created_at  REAL NOT NULL,
    finished_at REAL,
    kind        TEXT NOT NULL DEFAULT 'horizontal'
);
CREATE TABLE parties (
    name      TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    status    TEXT NOT NULL
);
CREATE TABLE rounds (
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    round       INTEGER NOT NULL CHECK (round >= 1),
    record      TEXT NOT NULL,
    checkpoint  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (job_id, round)
);
"""
_ANCHORS = """
CREATE TABLE anchors (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL,
    party       TEXT NOT NULL,
    round       INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    anchor      TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""  # layout version 2
_KIND = "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'horizontal'"  # version 3


class JobStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


_ALLOWED = {
    (JobStatus.RUNNING, JobStatus.DONE),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.FAILED, JobStatus.RUNNING),  # retry a failed job from its last round
}


@dataclass(frozen=True)
class JobRow:
    id: str
    name: str
    config_text: str
    config_json: str
    seed: int
    status: JobStatus
    error: str | None
    created_at: float
    finished_at: float | None
    kind: str = "horizontal"

    def job(self) -> JobConfig:
        """A horizontal job's configuration, rebuilt from its canonical JSON (a vertical job is
        rebuilt from ``config_text`` by the server, which knows its registered parties)."""
        if self.kind != "horizontal":
            raise StoreError(f"job {self.id!r} is a {self.kind} job, not a horizontal one")
        return parse_job(json.loads(self.config_json), source=f"job store (job {self.id!r})")


@dataclass(frozen=True)
class PartyRow:
    name: str
    last_seen: float
    status: str


@dataclass(frozen=True)
class RoundRow:
    job_id: str
    round: int
    record: RoundRecord
    checkpoint: Path
    sha256: str
    finished_at: float


def canonical_config(job: JobConfig | VerticalJobConfig | VerticalScoreJob) -> str:
    """The job config as sorted, compact JSON: equal configs give equal text."""
    return json.dumps(job.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def new_job_id(name: str) -> str:
    """A fresh job id: the job name, a UTC timestamp and a random suffix."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def record_from_json(raw: dict[str, Any]) -> RoundRecord:
    """Inverse of :meth:`RoundRecord.to_json`."""
    from fedsilo.runtime.coordinator import RoundRecord

    return RoundRecord(
        round=int(raw["round"]),
        participants=list(raw["participants"]),
        failures=dict(raw["failures"]),
        global_metrics=dict(raw["global"]),
        party_metrics={p: dict(m) for p, m in raw["parties"].items()},
        train_loss=float(raw["train_loss"]),
        duration_s=float(raw["duration_s"]),
        attempts=int(raw.get("attempts", 1)),
        privacy=dict(raw.get("privacy", {})),
    )


class JobStore:
    """One SQLite file; safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"job store {self.path} cannot be opened: {exc}") from None

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # two processes opening a new file: one creates
            try:
                self._create_or_check()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _create_or_check(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version in (1, 2):  # before anchors (1), before vertical jobs (2): add them
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if "anchors" not in tables:
                self._db.execute(_ANCHORS)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "kind" not in columns:
                self._db.execute(_KIND)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"job store {self.path} has layout version {version}, newer than this fedsilo "
                f"understands ({SCHEMA_VERSION}); upgrade fedsilo"
            )
        if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(f"{self.path} is an SQLite file but not a fedsilo job store")
        for statement in (_SCHEMA + _ANCHORS).split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return cursor.rowcount

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(
        self,
        job_id: str,
        job: JobConfig | VerticalJobConfig | VerticalScoreJob,
        *,
        config_text: str | None = None,
    ) -> JobRow:
        """Register a running job; ``config_text`` is the config as submitted (TOML)."""
        canonical = canonical_config(job)
        kind = "horizontal" if isinstance(job, JobConfig) else "vertical"
        try:
            self._write(
                "INSERT INTO jobs (id, name, config_text, config_json, seed, status, created_at,"
                " kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    job.name,
                    config_text if config_text is not None else canonical,
                    canonical,
                    job.seed,
                    JobStatus.RUNNING.value,
                    time.time(),
                    kind,
                ),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"job store {self.path} already has a job {job_id!r}") from None
        return self.job(job_id)

    def get_job(self, job_id: str) -> JobRow | None:
        rows = self._read(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,))
        return _job_row(rows[0]) if rows else None

    def job(self, job_id: str) -> JobRow:
        row = self.get_job(job_id)
        if row is None:
            raise StoreError(f"job store {self.path} has no job {job_id!r}")
        return row

    def jobs(self, status: JobStatus | None = None) -> list[JobRow]:
        """Jobs, oldest first (only those with ``status`` if given)."""
        if status is None:
            rows = self._read(f"SELECT {_JOB_COLS} FROM jobs ORDER BY created_at, id")
        else:
            rows = self._read(
                f"SELECT {_JOB_COLS} FROM jobs WHERE status = ? ORDER BY created_at, id",
                (status.value,),
            )
        return [_job_row(r) for r in rows]

    def set_status(self, job_id: str, status: JobStatus, *, error: str | None = None) -> None:
        """Move a job to ``status``; only running→done, running→failed, failed→running."""
        current = self.job(job_id).status
        if (current, status) not in _ALLOWED:
            raise StoreError(f"job {job_id!r} is {current.value}; it cannot become {status.value}")
        finished = None if status is JobStatus.RUNNING else time.time()
        self._write(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status = ?",
            (status.value, error, finished, job_id, current.value),
        )

    # -- rounds -------------------------------------------------------------------------------
    def record_round(self, job_id: str, record: RoundRecord, checkpoint: Path, sha256: str) -> None:
        """Record a completed round whose checkpoint file is already written."""
        if not Path(checkpoint).is_file():
            raise StoreError(
                f"checkpoint {checkpoint} must be written before its round is recorded"
            )
        text = json.dumps(record.to_json(), sort_keys=True)
        try:
            self._write(
                "INSERT INTO rounds (job_id, round, record, checkpoint, sha256, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, record.round, text, self._relative(checkpoint), sha256, time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"cannot record round {record.round} of job {job_id!r} in {self.path}: {exc}"
            ) from None

    def rounds(self, job_id: str) -> list[RoundRow]:
        rows = self._read(
            f"SELECT {_ROUND_COLS} FROM rounds WHERE job_id = ? ORDER BY round", (job_id,)
        )
        return [self._round_row(r) for r in rows]

    def last_round(self, job_id: str) -> RoundRow | None:
        rows = self._read(
            f"SELECT {_ROUND_COLS} FROM rounds WHERE job_id = ? ORDER BY round DESC LIMIT 1",
            (job_id,),
        )
        return self._round_row(rows[0]) if rows else None

    # -- parties ------------------------------------------------------------------------------
    def party_seen(self, name: str, status: str = "online", *, at: float | None = None) -> None:
        self._write(
            "INSERT INTO parties (name, last_seen, status) VALUES (?, ?, ?) ON CONFLICT(name) "
            "DO UPDATE SET last_seen = excluded.last_seen, status = excluded.status",
            (name, time.time() if at is None else at, status),
        )

    def parties(self) -> list[PartyRow]:
        rows = self._read("SELECT name, last_seen, status FROM parties ORDER BY name")
        return [PartyRow(str(n), float(t), str(s)) for n, t, s in rows]

    # -- anchors of the parties' audit logs ---------------------------------------------------
    def record_anchor(self, job_id: str, party: str, rnd: int, anchor: dict[str, Any]) -> None:
        """Keep a party's signed audit-log head (checked by the caller) as it arrived."""
        self._write(
            "INSERT INTO anchors (job_id, party, round, entries, anchor, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                job_id,
                party,
                rnd,
                int(anchor["entries"]),
                json.dumps(anchor, sort_keys=True),
                time.time(),
            ),
        )

    def anchors(self, party: str | None = None) -> list[dict[str, Any]]:
        """The stored anchors (of one party if given), in arrival order."""
        if party is None:
            rows = self._read("SELECT anchor FROM anchors ORDER BY id")
        else:
            rows = self._read("SELECT anchor FROM anchors WHERE party = ? ORDER BY id", (party,))
        return [dict(json.loads(a)) for (a,) in rows]

    # -- helpers ------------------------------------------------------------------------------
    def _relative(self, path: Path) -> str:
        base = self.path.resolve().parent
        resolved = Path(path).resolve()
        return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)

    def _round_row(self, row: tuple[Any, ...]) -> RoundRow:
        job_id, rnd, text, checkpoint, sha256, finished = row
        try:
            record = record_from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"job store {self.path}: round {rnd} of job {job_id!r} has a corrupt record: {exc}"
            ) from None
        path = Path(checkpoint)
        if not path.is_absolute():
            path = self.path.resolve().parent / path
        return RoundRow(str(job_id), int(rnd), record, path, str(sha256), float(finished))


_JOB_COLS = "id, name, config_text, config_json, seed, status, error, created_at, finished_at, kind"
_ROUND_COLS = "job_id, round, record, checkpoint, sha256, finished_at"


def _job_row(row: tuple[Any, ...]) -> JobRow:
    jid, name, text, canonical, seed, status, error, created, finished, kind = row
    return JobRow(
        str(jid),
        str(name),
        str(text),
        str(canonical),
        int(seed),
        JobStatus(status),
        error,
        float(created),
        None if finished is None else float(finished),
        str(kind),
    )
