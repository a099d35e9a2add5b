"""The round loop: one implementation for simulation and every deployment transport.

Per round (McMahan et al. 2017, Alg. 1, server side; Reddi et al. 2021, Alg. 2):
select parties → send global parameters and training config → gather replies before the
deadline → validate each (names, shapes, dtypes, finite values, example count) → aggregate the
pseudo-gradients ``client - global`` with the configured aggregator → apply the server
optimizer → evaluate on every party's held-out rows (and on a central test set when the
simulation has one) → report the round.

A round with fewer than ``selection.min_parties`` valid replies is tried again up to
``selection.max_round_retries`` times, then the job fails with :class:`RoundFailedError`.
The loop talks to parties only through :class:`~fedsilo.runtime.transport.Transport`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedsilo.config import JobConfig, TrainingConfig
from fedsilo.errors import FedsiloError, ProtocolError, RoundFailedError
from fedsilo.models import Params, build_model, check_params, flatten, get_params, unflatten
from fedsilo.privacy.record import RecordSpendTracker
from fedsilo.privacy.secagg.server_side import PrivateRounds
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.resume import JobResume
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.setup import COORDINATOR, SetupResult, prepare_parties
from fedsilo.runtime.store import JobStore
from fedsilo.runtime.transport import Transport
from fedsilo.training import EvalStats, LocalTrainConfig

log = logging.getLogger(__name__)


def local_train_config(training: TrainingConfig) -> LocalTrainConfig:
    """What each party's local training runs with, from the job's ``[training]``."""
    return LocalTrainConfig(
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        optimizer=training.optimizer.value,
        momentum=training.momentum,
        weight_decay=training.weight_decay,
        proximal_mu=training.proximal_mu,
    )


class CentralEvaluator(Protocol):
    """A test set the coordinator itself holds (simulation only)."""

    def prepare(self, setup: SetupResult) -> None: ...

    def evaluate(self, params: Params) -> dict[str, float]: ...


@dataclass(frozen=True)
class RoundRecord:
    round: int
    participants: list[str]
    failures: dict[str, str]
    global_metrics: dict[str, float]
    party_metrics: dict[str, dict[str, float]]
    train_loss: float
    duration_s: float
    attempts: int = 1
    # What the round spent, e.g. {"epsilon": .., "delta": .., "level": "record"|"client",
    # "parties": {name: {"epsilon": ..}}}; empty when no DP is configured.
    privacy: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "participants": self.participants,
            "failures": self.failures,
            "global": self.global_metrics,
            "parties": self.party_metrics,
            "train_loss": self.train_loss,
            "duration_s": self.duration_s,
            "attempts": self.attempts,
            "privacy": self.privacy,
        }


@dataclass
class TrainingOutcome:
    setup: SetupResult
    params: Params
    history: list[RoundRecord] = field(default_factory=list)


def select_parties(parties: list[str], job: JobConfig, rnd: int, attempt: int) -> list[str]:
    """Sample ``ceil(fraction * n)`` parties (at least ``min_parties``), seeded per round."""
    n = len(parties)
    k = min(n, max(job.selection.min_parties, math.ceil(job.selection.fraction * n)))
    if k == n:
        return list(parties)
    rng = np.random.default_rng(derive_seed(job.seed, "select", rnd, attempt))
    return sorted(rng.choice(parties, size=k, replace=False).tolist())


class Coordinator:
    """Runs a horizontal job over any :class:`Transport`."""

    def __init__(
        self,
        job: JobConfig,
        transport: Transport,
        *,
        central_evaluator: CentralEvaluator | None = None,
        on_round: Callable[[RoundRecord], None] | None = None,
        store: JobStore | None = None,
        job_id: str | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.job = job
        self.transport = transport
        self.central_evaluator = central_evaluator
        self.on_round = on_round
        self._aggregator = job.aggregation.aggregator_spec()
        self._server_opt = job.aggregation.server_optimizer_spec().create()
        self._training_body = dataclasses.asdict(local_train_config(job.training))
        # With a store: checkpoint every round under job_id, and resume from the last one.
        self._resume = (
            None if store is None else JobResume(store, job_id or "", job, checkpoint_dir)
        )
        self._private: PrivateRounds | None = None  # secure aggregation and/or client DP
        self._record_spend = RecordSpendTracker(job)

    def run(self) -> TrainingOutcome:
        if self._resume is None:
            return self._run()
        try:
            outcome = self._run()
        except FedsiloError as exc:  # a crash (any other exception) leaves the job resumable
            self._resume.fail(f"{type(exc).__name__}: {exc}")
            raise
        self._resume.finish()
        return outcome

    def _run(self) -> TrainingOutcome:
        privacy = self.job.privacy
        if privacy.reproducible_noise:
            log.warning(
                "job %r: [privacy] reproducible_noise is on: DP noise is seeded from the job "
                "seed (simulation only; deployed parties refuse it)",
                self.job.name,
            )
        setup = prepare_parties(self.transport, self.job)
        if privacy.secure_aggregation.enabled or privacy.client_dp.enabled:
            self._private = PrivateRounds(self.job, self._training_body, len(setup.parties))
        if self.central_evaluator is not None:
            self.central_evaluator.prepare(setup)
        params = get_params(build_model(setup.model_spec, seed=self.job.seed))
        outcome = TrainingOutcome(setup, params)
        if self._resume is not None:
            self._resume.begin(outcome, self._server_opt)  # loads completed rounds, if any
            params = outcome.params
            if self._private is not None:
                self._private.restore(outcome.history)  # client-DP clip norm and spend
            self._record_spend.restore(outcome.history)
        for rnd in range(len(outcome.history) + 1, self.job.rounds + 1):
            record, params = self._round(rnd, setup, params)
            outcome.history.append(record)
            outcome.params = params
            if self._resume is not None:
                self._resume.round_done(record, params, self._server_opt)
            if self.on_round is not None:
                self.on_round(record)
        return outcome

    # -- one round ----------------------------------------------------------------------------
    def _round(self, rnd: int, setup: SetupResult, params: Params) -> tuple[RoundRecord, Params]:
        started = time.monotonic()
        if self._private is not None:
            return self._private_round(rnd, setup, params, started)
        online = self.transport.party_names()
        index = {p: i for i, p in enumerate(setup.parties)}
        failures: dict[str, str] = {}
        for attempt in range(self.job.selection.max_round_retries + 1):
            selected = select_parties(online, self.job, rnd, attempt)
            tasks = {
                p: Message(
                    TaskKind.FIT,
                    self.job.name,
                    rnd,
                    COORDINATOR,
                    {
                        "training": self._training_body,
                        "seed": derive_seed(self.job.seed, "fit", rnd, index.get(p, -1)),
                    },
                    params,
                )
                for p in selected
            }
            gathered = self.transport.exchange(tasks, timeout_s=self.job.selection.timeout_s)
            failures = dict(gathered.failures)
            accepted: dict[str, tuple[Params, int, float]] = {}
            for party, reply in sorted(gathered.replies.items()):
                try:
                    accepted[party] = self._validate_fit(reply, params, setup)
                except ProtocolError as exc:
                    failures[party] = str(exc)
                    log.warning("round %d: rejected update from party '%s': %s", rnd, party, exc)
            privacy = self._record_spend.observe(rnd, gathered.replies, accepted)
            if len(accepted) >= self.job.selection.min_parties:
                break
            log.warning(
                "round %d attempt %d: %d valid replies, %d needed; retrying",
                rnd,
                attempt + 1,
                len(accepted),
                self.job.selection.min_parties,
            )
        else:
            reasons = "; ".join(f"{p}: {why}" for p, why in sorted(failures.items()))
            raise RoundFailedError(
                f"round {rnd} got {len(accepted)} valid update(s) after "
                f"{self.job.selection.max_round_retries + 1} attempt(s), needs "
                f"{self.job.selection.min_parties} (selection.min_parties). Failures: {reasons}"
            )
        new_params = self._aggregate(params, accepted)
        party_metrics, merged = self._evaluate(rnd, new_params, online, failures)
        if self.central_evaluator is not None:
            global_metrics = self.central_evaluator.evaluate(new_params)
        else:
            global_metrics = merged.metrics() if merged is not None else {}
        total = sum(n for _, n, _ in accepted.values())
        train_loss = sum(loss * n for _, n, loss in accepted.values()) / total
        record = RoundRecord(
            round=rnd,
            participants=sorted(accepted),
            failures=failures,
            global_metrics=global_metrics,
            party_metrics=party_metrics,
            train_loss=train_loss,
            duration_s=time.monotonic() - started,
            attempts=attempt + 1,
            privacy=privacy,
        )
        return record, new_params

    def _private_round(
        self, rnd: int, setup: SetupResult, params: Params, started: float
    ) -> tuple[RoundRecord, Params]:
        """A round whose updates the coordinator sees only as an aggregate (privacy/secagg)."""
        assert self._private is not None
        online = self.transport.party_names()
        agg = self._private.collect(
            self.transport, rnd, setup, params, lambda a: select_parties(online, self.job, rnd, a)
        )
        accepted = {p: True for p in agg.participants if p in agg.fit_replies}
        record_spend = self._record_spend.observe(rnd, agg.fit_replies, accepted)
        new_params = unflatten(self._server_opt.step(flatten(params), agg.delta), params)
        failures = dict(agg.failures)
        party_metrics, merged = self._evaluate(rnd, new_params, online, failures)
        if self.central_evaluator is not None:
            global_metrics = self.central_evaluator.evaluate(new_params)
        else:
            global_metrics = merged.metrics() if merged is not None else {}
        record = RoundRecord(
            round=rnd,
            participants=agg.participants,
            failures=failures,
            global_metrics=global_metrics,
            party_metrics=party_metrics,
            train_loss=agg.train_loss,
            duration_s=time.monotonic() - started,
            attempts=agg.attempts,
            privacy=record_spend or agg.privacy,  # one DP level per job (config check)
        )
        return record, new_params

    def _validate_fit(
        self, reply: Message, params: Params, setup: SetupResult
    ) -> tuple[Params, int, float]:
        if reply.error is not None:
            raise ProtocolError(f"party reported: {reply.error}")
        if reply.kind is not TaskKind.FIT:
            raise ProtocolError(f"expected a fit reply, got {reply.kind.value}")
        check_params(reply.arrays, params)
        try:
            n = int(reply.body["num_examples"])
            loss = float(reply.body["train_loss"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"fit reply lacks a valid {exc}") from None
        declared = setup.summary.get(reply.sender, {}).get("train_examples")
        if n <= 0 or (declared is not None and n > declared):
            raise ProtocolError(
                f"declared {n} training examples; setup reported {declared} for this party"
            )
        # Same order as the global parameters, whatever order the party sent them in.
        return {name: reply.arrays[name] for name in params}, n, loss

    def _aggregate(self, params: Params, accepted: dict[str, tuple[Params, int, float]]) -> Params:
        base = flatten(params)
        names = sorted(accepted)
        updates = np.stack([flatten(accepted[p][0]) - base for p in names])
        weights = np.array([accepted[p][1] for p in names], dtype=np.float64)
        delta = self._aggregator.aggregate(updates, weights)
        return unflatten(self._server_opt.step(base, delta), params)

    def _evaluate(
        self, rnd: int, params: Params, parties: list[str], failures: dict[str, str]
    ) -> tuple[dict[str, dict[str, float]], EvalStats | None]:
        tasks = {
            p: Message(TaskKind.EVALUATE, self.job.name, rnd, COORDINATOR, {}, params)
            for p in parties
        }
        gathered = self.transport.exchange(tasks, timeout_s=self.job.selection.timeout_s)
        metrics: dict[str, dict[str, float]] = {}
        merged: EvalStats | None = None
        for party, why in gathered.failures.items():
            failures.setdefault(party, f"evaluation: {why}")
        for party, reply in sorted(gathered.replies.items()):
            if reply.error is not None:
                failures.setdefault(party, f"evaluation: {reply.error}")
                continue
            try:
                stats = EvalStats.from_json(reply.body["stats"])
                metrics[party] = {k: float(v) for k, v in reply.body["metrics"].items()}
            except (KeyError, TypeError, ValueError) as exc:
                failures.setdefault(party, f"evaluation reply malformed: {exc}")
                continue
            merged = stats if merged is None else merged.merge(stats)
        return metrics, merged
