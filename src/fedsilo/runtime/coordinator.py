"""The round loop: one implementation for simulation and every deployment transport.

Per round (McMahan et al. 2017, Alg. 1, server side; Reddi et al. 2021, Alg. 2):
select parties → fit → gather the replies before the deadline → retry → aggregate → apply the
server optimizer → evaluate (a central test set, when the simulation has one, every round; the
round's sampled parties on their own held-out rows every ``evaluation.every`` rounds, and every
connected party in the last round) → record → checkpoint. How the fit replies become one update (in the
clear, validated and aggregated; clipped and noised for client DP; masked and summed under
secure aggregation) is the job's :class:`~fedsilo.runtime.collectors.Collector`; this loop is
the same for all of them.

An attempt with fewer than ``selection.min_parties`` valid replies is tried again, with a
fresh selection (of the parties online then) and fresh training seeds, up to
``selection.max_round_retries`` times (a deployment waits ``retry_backoff_s``, doubling,
before each retry), then the job fails with :class:`RoundFailedError`, whose message gives
every attempt's failures, each distinct reason once with the attempts and the selected or
missing parties that gave it (:func:`~fedsilo.runtime.failures.round_failures`). A party
that refuses the round for its privacy budget (error code ``budget_exhausted``) would refuse every retry
too: when such parties leave fewer than ``min_parties`` of the job's parties that could train,
the job ends at once with :class:`~fedsilo.errors.BudgetExhaustedError` naming them, and no
retry is made. The loop talks to parties only through
:class:`~fedsilo.runtime.transport.Transport`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedsilo.config import JobConfig, TrainingConfig
from fedsilo.errors import FedsiloError, ProtocolError, RoundFailedError
from fedsilo.models import Params, build_model, flatten, get_params, unflatten
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.anchors import AnchorKeeper
from fedsilo.runtime.collectors import (
    Attempt,
    Collected,
    Collector,
    PlainCollector,
    build_collector,
)
from fedsilo.runtime.failures import ROUND, round_failures
from fedsilo.runtime.record_spend import RecordSpendTracker, budget_refusals, spent_budgets
from fedsilo.runtime.replies import accept_evaluation
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
    k = job.selection.per_round(n)
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
        on_setup: Callable[[SetupResult], None] | None = None,
        store: JobStore | None = None,
        job_id: str | None = None,
        checkpoint_dir: Path | None = None,
        retry_backoff_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.job = job
        # A deployment waits before a round's retry (doubling each time), so a party that
        # stalled under load or restarted can come back; the simulation retries at once.
        self.retry_backoff_s = retry_backoff_s
        self._sleep = sleep
        # With a store, the parties' signed audit-log anchors are kept in it (runtime.anchors).
        self.transport = (
            transport if store is None else AnchorKeeper(transport, store, job_id or "")
        )
        self.central_evaluator = central_evaluator
        self.on_round = on_round
        # Once the parties are set up, before round 1; raising refuses the job (a simulation
        # checks the parties' privacy budgets against the plan, runtime.budget_outlook).
        self.on_setup = on_setup
        self._server_opt = job.aggregation.server_optimizer_spec().create()
        self._training_body = dataclasses.asdict(local_train_config(job.training))
        # With a store: checkpoint every round under job_id, and resume from the last one.
        self._resume = (
            None if store is None else JobResume(store, job_id or "", job, checkpoint_dir)
        )
        # plain, secure aggregation and/or client DP: built in run() once the parties are known
        self._collector: Collector = PlainCollector(job.aggregation.aggregator_spec())
        self._record_spend = RecordSpendTracker(job)

    def run(
        self, *, before_done: Callable[[TrainingOutcome], None] | None = None
    ) -> TrainingOutcome:
        """Run the job. ``before_done`` (e.g. writing the results) runs before the store says
        ``done``, so a job whose results could not be written is never recorded as done."""
        if self._resume is None:
            outcome = self._run()
            if before_done is not None:
                before_done(outcome)
            return outcome
        try:
            outcome = self._run()
            if before_done is not None:
                before_done(outcome)
        except FedsiloError as exc:  # a crash (any other exception) leaves the job resumable
            self._resume.fail(f"{type(exc).__name__}: {exc}")
            raise
        self._resume.finish()
        return outcome

    def _run(self) -> TrainingOutcome:
        if self.job.privacy.reproducible_noise:
            log.warning(
                "job %r: [privacy] reproducible_noise is on: DP noise is seeded from the job "
                "seed (simulation only; deployed parties refuse it)",
                self.job.name,
            )
        setup = prepare_parties(self.transport, self.job)
        if self.on_setup is not None:
            self.on_setup(setup)
        self._collector = build_collector(self.job, len(setup.parties))
        if self.central_evaluator is not None:
            self.central_evaluator.prepare(setup)
        params = get_params(build_model(setup.model_spec, seed=self.job.seed))
        outcome = TrainingOutcome(setup, params)
        if self._resume is not None:
            self._resume.begin(outcome, self._server_opt)  # loads completed rounds, if any
            params = outcome.params
            self._collector.restore(outcome.history)  # client-DP clip norm and spend
            self._record_spend.restore(outcome.history)
        with _heap_frozen():
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
        """select → fit → gather → retry → aggregate → evaluate → record (checkpoint: run)."""
        started = time.monotonic()
        retries = self.job.selection.max_round_retries
        tried: list[dict[str, str]] = []  # every attempt's failures, for the error if all fail
        spent: dict[str, str] = {}  # parties that refused this round for their budget: why
        for number in range(retries + 1):
            if number and self.retry_backoff_s > 0:
                wait = self.retry_backoff_s * 2 ** (number - 1)
                log.info("round %d: retrying in %g s", rnd, wait)
                self._sleep(wait)
            online = self.transport.party_names()
            attempt = Attempt(
                self.job,
                self.transport,
                setup,
                rnd,
                number,
                select_parties(online, self.job, rnd, number),
                params,
                self._training_body,
            )
            collected: Collected | None = None
            try:
                collected = self._collector.collect(attempt)
            except RoundFailedError as exc:
                attempt.failures[ROUND] = str(exc)
                log.warning("round %d attempt %d failed: %s", rnd, number + 1, exc)
            for party in setup.parties:
                if party not in online:
                    attempt.failures.setdefault(party, "not connected when the attempt began")
            # Record-level spend of every attempt: parties spent it whether or not we keep it.
            record_spend = self._record_spend.observe(rnd, attempt.fit_replies, attempt.accepted)
            if collected is not None:
                break
            spent.update(budget_refusals(attempt.fit_replies))
            self._stop_if_budgets_spent(rnd, setup, spent)
            tried.append(attempt.failures)
        else:
            raise RoundFailedError(
                f"round {rnd} failed after {retries + 1} attempt(s) "
                f"(selection.max_round_retries = {retries}). Failures: {round_failures(tried)}"
            )
        new_params = unflatten(self._server_opt.step(flatten(params), collected.delta), params)
        failures = attempt.failures
        party_metrics, merged = self._evaluate(
            rnd, setup, new_params, self._evaluated(rnd, online, attempt.selected), failures
        )
        if self.central_evaluator is not None:
            global_metrics = self.central_evaluator.evaluate(new_params)
        else:
            global_metrics = merged.metrics() if merged is not None else {}
        record = RoundRecord(
            round=rnd,
            participants=collected.participants,
            failures=failures,
            global_metrics=global_metrics,
            party_metrics=party_metrics,
            train_loss=collected.train_loss,
            duration_s=time.monotonic() - started,
            attempts=number + 1,
            privacy=record_spend or collected.privacy,  # one DP level per job (config check)
        )
        return record, new_params

    def _stop_if_budgets_spent(self, rnd: int, setup: SetupResult, spent: dict[str, str]) -> None:
        """End the job (:class:`BudgetExhaustedError`) when the parties that refused round
        ``rnd`` for their privacy budget leave fewer than ``selection.min_parties`` that could
        still train: a spent budget stays spent, so a retry would only be refused again."""
        need = self.job.selection.min_parties
        able = [p for p in setup.parties if p not in spent]
        if spent and len(able) < need:
            raise spent_budgets(rnd, spent, able, need)

    def _evaluated(self, rnd: int, online: list[str], selected: list[str]) -> list[str]:
        """Who evaluates after round ``rnd``: everyone online in the last round, else the
        round's sampled parties every ``evaluation.every`` rounds."""
        if rnd == self.job.rounds:
            return online
        if rnd % self.job.evaluation.every:
            return []
        return list(selected)  # drawn from the online parties

    def _evaluate(
        self,
        rnd: int,
        setup: SetupResult,
        params: Params,
        parties: list[str],
        failures: dict[str, str],
    ) -> tuple[dict[str, dict[str, float]], EvalStats | None]:
        if not parties:
            return {}, None
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
            try:
                holdout = setup.declared(party).holdout_examples
                metrics[party], stats = accept_evaluation(reply, rnd, len(setup.classes), holdout)
            except ProtocolError as exc:
                failures.setdefault(party, f"evaluation: {exc}")
                log.warning("round %d: rejected evaluation from party '%s': %s", rnd, party, exc)
                continue
            merged = stats if merged is None else merged.merge(stats)
        return metrics, merged


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """The rounds with what exists before them kept out of the cyclic collector's passes.

    What exists before round 1 lives for the job: in simulation every party's data and model
    (~240k objects at 100 parties). Rounds allocate and free, and objects that outlive a
    round's first collections (a secure-aggregation round's per-party state) make Python run
    a full collection every few rounds, which walked all of them: ~0.15 s each, ~0.02 s per
    SecAgg+ round at 100 parties (``gc.freeze``). Reference counting frees as always; only
    cycles among the frozen objects wait for the end of the job (``gc.unfreeze``). A process
    that froze its own heap (a forking server) is left as it was.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
