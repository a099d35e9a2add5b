"""Checkpoint every completed round to a :class:`JobStore`, and continue a job from it.

The coordinator calls :meth:`JobResume.begin` after party setup, :meth:`round_done` after
each round and :meth:`finish` / :meth:`fail` at the end. Because party selection and every
party's training seed derive from (job seed, round), a job continued from round ``k`` trains
exactly as the uninterrupted job would: the checkpoint holds the two pieces of state that carry
over between rounds, the global parameters and the server optimizer's state.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fedsilo.aggregation import ServerOptimizer
from fedsilo.config import JobConfig
from fedsilo.errors import AggregationError, ConfigError, StoreError
from fedsilo.models import Params
from fedsilo.runtime.checkpoint import load_checkpoint, save_checkpoint
from fedsilo.runtime.store import JobStatus, JobStore, canonical_config

if TYPE_CHECKING:
    from fedsilo.runtime.coordinator import RoundRecord, TrainingOutcome

log = logging.getLogger(__name__)


class JobResume:
    """Round persistence for one job id in one store."""

    def __init__(
        self, store: JobStore, job_id: str, job: JobConfig, checkpoint_dir: Path | None = None
    ) -> None:
        if not job_id:
            raise ConfigError("a job store needs a job_id to record the job under")
        self.store = store
        self.job_id = job_id
        self.job = job
        self.checkpoint_dir = (
            checkpoint_dir
            if checkpoint_dir is not None
            else store.path.parent / "checkpoints" / job_id
        )
        self._begun = False  # errors before training (bad config or checkpoint) fail nothing

    def checkpoint_path(self, rnd: int) -> Path:
        return self.checkpoint_dir / f"round-{rnd:04d}.safetensors"

    def begin(self, outcome: TrainingOutcome, server_opt: ServerOptimizer) -> None:
        """Register the job, or load its completed rounds, parameters and optimizer state."""
        row = self.store.get_job(self.job_id)
        if row is None:
            self.store.create_job(self.job_id, self.job)
            self._begun = True
            return
        if row.config_json != canonical_config(self.job):
            stored, given = json.loads(row.config_json), json.loads(canonical_config(self.job))
            keys = sorted(k for k in stored.keys() | given.keys() if stored.get(k) != given.get(k))
            raise ConfigError(
                f"job {self.job_id!r} in {self.store.path} was started with a different "
                f"configuration (differs in: {', '.join(keys)}); resume it with the same job "
                "config, or submit a new job"
            )
        if row.status is JobStatus.FAILED:
            log.warning(
                "job %s failed before (%s); retrying from its last round", row.id, row.error
            )
            self.store.set_status(self.job_id, JobStatus.RUNNING)
        rounds = self.store.rounds(self.job_id)
        if not rounds:
            self._begun = True
            return
        numbers = [r.round for r in rounds]
        if numbers != list(range(1, len(rounds) + 1)):
            raise StoreError(f"job {self.job_id!r} in {self.store.path} has rounds {numbers}")
        last = rounds[-1]
        params, state = load_checkpoint(
            last.checkpoint,
            outcome.params,
            job_id=self.job_id,
            round=last.round,
            sha256=last.sha256,
        )
        try:
            server_opt.load_state_dict(state)
        except AggregationError as exc:
            raise StoreError(
                f"checkpoint {last.checkpoint} (job {self.job_id!r}, round {last.round}): "
                f"server optimizer state does not fit this job: {exc}"
            ) from None
        outcome.params = params
        outcome.history[:] = [r.record for r in rounds]
        log.info("job %s: resuming after round %d of %d", self.job_id, last.round, self.job.rounds)
        self._begun = True

    def round_done(self, record: RoundRecord, params: Params, server_opt: ServerOptimizer) -> None:
        """Write the round's checkpoint (atomically), then record the round."""
        path = self.checkpoint_path(record.round)
        digest = save_checkpoint(
            path, params, server_opt.state_dict(), job_id=self.job_id, round=record.round
        )
        self.store.record_round(self.job_id, record, path, digest)

    def finish(self) -> None:
        if self.store.job(self.job_id).status is JobStatus.RUNNING:
            self.store.set_status(self.job_id, JobStatus.DONE)

    def fail(self, error: str) -> None:
        """Mark the job failed, unless it never started (setup or resume itself failed)."""
        if self._begun and self.store.job(self.job_id).status is JobStatus.RUNNING:
            self.store.set_status(self.job_id, JobStatus.FAILED, error=error)
