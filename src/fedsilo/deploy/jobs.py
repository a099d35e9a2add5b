"""The server's jobs: parse a submitted job, wait for its parties, run it, save its results.

A deployment job is the same TOML as a simulation job. Its ``[[parties]]`` name the
organizations that take part; their ``path`` entries, if any, are ignored by the server (each
party's data path lives in its own ``party.toml``). Without ``[[parties]]`` the job runs over
every registered, unrevoked party. Vertical jobs (``kind = "vertical"``) are handled by
:mod:`fedsilo.deploy.vertical_jobs`. Jobs run one at a time, in submission order, with the same
:class:`~fedsilo.runtime.coordinator.Coordinator` the simulation uses; results land in
``<run_dir>/<job_id>/`` exactly as ``fedsilo simulate --out`` writes them. Every job and
completed round is in the :class:`~fedsilo.runtime.store.JobStore` (``<run_dir>/state.sqlite``):
a restarted server queues the jobs that were running and the coordinator continues each from
its last completed round.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fedsilo.config import JobConfig, parse_job
from fedsilo.config_base import parse_toml
from fedsilo.deploy.grpc_transport import GrpcTransport, PartyBoard
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.vertical_jobs import (
    VerticalProgress,
    finished_progress,
    parse_deploy_vertical_job,
    require_registered,
    run_vertical_job,
    run_vertical_score_job,
    wait_for_all,
)
from fedsilo.errors import ConfigError, FedsiloError
from fedsilo.extras import require
from fedsilo.jobs import ANALYTICS, VERTICAL, VERTICAL_SCORE, job_kind
from fedsilo.results import Result
from fedsilo.runtime.coordinator import Coordinator, RoundRecord, TrainingOutcome
from fedsilo.runtime.store import JobStatus, JobStore
from fedsilo.runtime.store import new_job_id as store_job_id
from fedsilo.tracking import refuse_in_deployment
from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob

log = logging.getLogger(__name__)


def parse_deploy_job(text: str, *, source: str, registered: list[str]) -> JobConfig:
    """Validate a job TOML for a deployment (party data paths are the parties' business)."""
    raw = parse_toml(text, source=source)
    refuse_in_deployment(raw, source=source)
    parties = raw.get("parties")
    if parties is None:
        parties = [{"name": p} for p in registered]
    if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
        raise ConfigError(f"{source}: [[parties]] must be a list of tables with a name")
    raw["parties"] = [{**p, "path": p.get("path", f"held-by-{p.get('name')}")} for p in parties]
    job = parse_job(raw, source=source)
    budget = job.privacy.budget
    if budget.max_epsilon is not None or budget.parties:
        raise ConfigError(
            f"{source}: privacy.budget max_epsilon (and its per-party overrides) is a simulated "
            "party's budget; a deployed party keeps its own ([privacy] max_epsilon in its "
            "party.toml) and refuses a round past it: remove it from the job "
            "(privacy.budget.on_exhausted still applies)"
        )
    require_registered([p.name for p in job.parties], registered, source=source)
    return job


@dataclass
class JobRecord:
    job_id: str
    job: JobConfig | VerticalJobConfig | VerticalScoreJob
    toml: str
    status: str = "queued"
    round: int = 0
    error: str = ""
    run_dir: Path | None = None
    last: RoundRecord | None = None  # the last completed round (horizontal jobs)
    progress: VerticalProgress | None = None  # the last epoch or tree (vertical training jobs)

    def to_proto(self) -> pb.JobStatus:
        status = pb.JobStatus(
            job_id=self.job_id,
            name=self.job.name,
            status=self.status,
            round=self.round,
            rounds=(self.job.rounds),
            error=self.error,
            run_dir=str(self.run_dir or ""),
            kind=self.job.kind,
            epsilon=-1.0,
        )
        if self.last is not None:
            last = self.last
            status.metrics.update({k: float(v) for k, v in last.global_metrics.items()})
            status.failures.update({p: str(why) for p, why in last.failures.items()})
            status.round_s = last.duration_s
            if "epsilon" in last.privacy:
                status.epsilon = float(last.privacy["epsilon"])
                status.delta = float(last.privacy.get("delta", 0.0))
        elif self.progress is not None:
            status.metrics.update(self.progress.metrics)
            status.round_s = self.progress.step_s
        return status


def new_job_id(name: str) -> str:
    return store_job_id(re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "job")


class JobRunner:
    """Queues jobs and runs them one after another on a background thread."""

    def __init__(
        self,
        board: PartyBoard,
        run_dir: Path,
        registered: list[str],
        *,
        wait_for_parties_s: float,
        store: JobStore,
        retry_backoff_s: float = 0.0,
    ) -> None:
        self._retry_backoff_s = retry_backoff_s
        self._board = board
        self._store = store
        self._run_dir = run_dir
        self._registered = registered
        self._wait_s = wait_for_parties_s
        self._lock = threading.Condition()
        self._jobs: list[JobRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fedsilo-jobs", daemon=True)
        self._reload()

    def _reload(self) -> None:
        """Jobs from the store: finished ones for status, unfinished ones queued to resume.

        A vertical job that was running cannot resume (its protocol state, HE keys and PSI
        alignment, lived in memory): it is recorded as failed with the reason, and
        ``fedsilo submit --restart JOB_ID`` runs it again.
        """
        for row in self._store.jobs():
            job: JobConfig | VerticalJobConfig | VerticalScoreJob
            last = None
            if row.kind == VERTICAL:
                job = parse_deploy_vertical_job(
                    row.config_text, source=f"job store (job {row.id!r})", registered=None
                )
            else:
                job = row.job()
                last = self._store.last_round(row.id)
            record = JobRecord(
                row.id,
                job,
                row.config_text,
                round=last.round if last else 0,
                last=last.record if last else None,
            )
            if row.kind == VERTICAL and row.status is JobStatus.DONE:
                self._finished_vertical(record)
            if row.status is JobStatus.RUNNING and row.kind == VERTICAL:
                reason = (
                    "the server stopped during this vertical job; its protocol state (HE "
                    "keys, PSI alignment) was in memory, so it does not resume. Run it again "
                    f"with `fedsilo submit --restart {row.id}`"
                )
                self._store.set_status(row.id, JobStatus.FAILED, error=reason)
                log.warning("job %s: %s", row.id, reason)
                record.status, record.error = "failed", reason
            elif row.status is JobStatus.RUNNING:
                log.info("job %s was running when the server stopped; resuming it", row.id)
            else:
                record.status = row.status.value
                record.error = row.error or ""
                out = self._run_dir / row.id
                record.run_dir = out if out.exists() else None
            self._jobs.append(record)

    def _finished_vertical(self, record: JobRecord) -> None:
        """A finished vertical job's round and metrics from its results (a training job's
        metrics.json): the same when it finishes and after a restart (the store keeps no
        per-epoch or per-tree rows for vertical jobs)."""
        if isinstance(record.job, VerticalScoreJob):
            record.round = record.job.rounds  # one step
            return
        found = finished_progress(self._run_dir / record.job_id)
        if found is not None:
            record.progress, record.round = found, found.done

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def submit(self, job_toml: str, *, source: str = "submitted job") -> str:
        job: JobConfig | VerticalJobConfig | VerticalScoreJob
        kind = job_kind(parse_toml(job_toml, source=source), source=source)
        if kind == ANALYTICS:
            raise ConfigError(
                f"{source} is an analytics job; send it with `fedsilo query JOB SQL --server ...`"
            )
        if kind in (VERTICAL, VERTICAL_SCORE):
            require("vertical", f"{source} (a vertical job, run by this server)")
            job = parse_deploy_vertical_job(job_toml, source=source, registered=self._registered)
            if isinstance(job, VerticalScoreJob):  # its training run, now, not when it runs
                from fedsilo.vertical.scoring import trained_job

                trained_job(self._run_dir / job.run, source=source)
        else:
            job = parse_deploy_job(job_toml, source=source, registered=self._registered)
        record = JobRecord(new_job_id(job.name), job, job_toml)
        self._store.create_job(record.job_id, job, config_text=job_toml)
        with self._lock:
            self._jobs.append(record)
            self._lock.notify_all()
        log.info("job %s (%s) queued", record.job_id, job.name)
        return record.job_id

    def restart(self, job_id: str) -> str:
        """Run a failed job again: a horizontal job resumes after its last completed round
        (same id); a vertical job starts over as a new job (its new id is returned)."""
        with self._lock:
            record = next((r for r in self._jobs if r.job_id == job_id), None)
        if record is None:
            raise ConfigError(f"no job {job_id!r} on this server (see `fedsilo status`)")
        if record.status != "failed":
            raise ConfigError(f"job {job_id!r} is {record.status}; only a failed job restarts")
        if isinstance(record.job, VerticalJobConfig | VerticalScoreJob):
            new_id = self.submit(record.toml, source=f"job {job_id} restarted")
            log.info("job %s restarted as %s", job_id, new_id)
            return new_id
        self._store.set_status(job_id, JobStatus.RUNNING)
        with self._lock:
            record.status, record.error = "queued", ""
            self._lock.notify_all()
        log.info("job %s restarted; it resumes after round %d", job_id, record.round)
        return job_id

    def status(self) -> list[pb.JobStatus]:
        with self._lock:
            return [r.to_proto() for r in self._jobs]

    def _next(self) -> JobRecord | None:
        with self._lock:
            while not self._stop.is_set():
                for record in self._jobs:
                    if record.status == "queued":
                        record.status = "running"
                        return record
                self._lock.wait(1.0)
        return None

    def _loop(self) -> None:
        while (record := self._next()) is not None:
            try:
                self._run(record)
            except FedsiloError as exc:
                record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
                log.error("job %s failed: %s", record.job_id, record.error)
            except Exception as exc:  # the server outlives any one job
                record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("job %s crashed", record.job_id)
            if record.status == "failed":
                row = self._store.get_job(record.job_id)
                if row is not None and row.status is JobStatus.RUNNING:
                    self._store.set_status(record.job_id, JobStatus.FAILED, error=record.error)

    def _wait_for_parties(self, job: JobConfig) -> list[str]:
        wanted = [p.name for p in job.parties]
        deadline = time.monotonic() + self._wait_s
        while True:
            online = [p for p in wanted if p in set(self._board.online())]
            if len(online) == len(wanted) or self._stop.is_set():
                return online
            if time.monotonic() > deadline:
                if len(online) >= job.selection.min_parties:
                    log.warning("starting %s without %s", job.name, set(wanted) - set(online))
                    return online
                raise FedsiloError(
                    f"only {len(online)} of the job's parties connected within "
                    f"{self._wait_s:g} s ({', '.join(online) or 'none'}); "
                    f"selection.min_parties is {job.selection.min_parties}"
                )
            time.sleep(0.2)

    def _run(self, record: JobRecord) -> None:
        if isinstance(record.job, VerticalJobConfig):
            self._run_vertical(record, record.job)
            return
        if isinstance(record.job, VerticalScoreJob):
            self._run_vertical_score(record, record.job)
            return
        job = record.job
        started = time.monotonic()
        parties = self._wait_for_parties(job)
        log.info("job %s: starting with parties %s", record.job_id, ", ".join(parties))

        def on_round(r: RoundRecord) -> None:
            record.round, record.last = r.round, r
            dropped = f" dropped: {sorted(r.failures)}" if r.failures else ""
            log.info("job %s round %d/%d done%s", record.job_id, r.round, job.rounds, dropped)

        coordinator = Coordinator(
            job,
            GrpcTransport(self._board, parties),
            on_round=on_round,
            store=self._store,
            job_id=record.job_id,
            retry_backoff_s=self._retry_backoff_s,
        )
        out = self._run_dir / record.job_id

        def save(outcome: TrainingOutcome) -> None:  # before the store says done
            result = Result(
                job=job,
                setup=outcome.setup,
                params=outcome.params,
                history=outcome.history,
                baseline=None,
                wall_time_s=time.monotonic() - started,
            )
            result.save(out)

        coordinator.run(before_done=save)
        record.run_dir = out
        record.status = "done"
        log.info("job %s done; results in %s", record.job_id, out)

    def _run_vertical(self, record: JobRecord, job: VerticalJobConfig) -> None:
        wait_for_all(self._board, job, self._wait_s, self._stop.is_set)
        log.info("job %s: vertical %s starting", record.job_id, job.algorithm.value)

        def progress(step: VerticalProgress) -> None:
            record.progress, record.round = step, step.done  # a status showing the round has it
            log.info("job %s: %d/%d done", record.job_id, step.done, job.rounds)

        out = self._run_dir / record.job_id
        run_vertical_job(
            job,
            self._board,
            job_id=record.job_id,
            out=out,
            on_progress=progress,
            store=self._store,
        )
        self._finished_vertical(record)
        self._store.set_status(record.job_id, JobStatus.DONE)
        record.run_dir = out
        record.status = "done"
        log.info("job %s done; metrics in %s (model parts stay at the parties)", record.job_id, out)

    def _run_vertical_score(self, record: JobRecord, job: VerticalScoreJob) -> None:
        wait_for_all(self._board, job, self._wait_s, self._stop.is_set)
        log.info("job %s: scoring with the saved parts of %s", record.job_id, job.run)
        out = self._run_dir / record.job_id
        run_vertical_score_job(
            job,
            self._board,
            job_id=record.job_id,
            run_dir=self._run_dir,
            out=out,
            store=self._store,
        )
        self._finished_vertical(record)
        self._store.set_status(record.job_id, JobStatus.DONE)
        record.run_dir = out
        record.status = "done"
        log.info("job %s done; counts in %s (the scores stay at the guest)", record.job_id, out)
