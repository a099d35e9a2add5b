"""The coordinator's side of record-level DP: propose it at setup, report what parties spent.

The coordinator never decides a party's spend: each party accounts its own DP-SGD and reports
its epsilon in the fit reply's ``privacy`` body. :class:`RecordSpendTracker` keeps the last
report of every party and turns them into the round's ``RoundRecord.privacy``::

    {"level": "record", "epsilon": <max over parties>, "delta": ..., "accounting": ...,
     "parties": {name: {"epsilon": ..., "noise_multiplier": ..., "steps": ..., ...}}}

A party that refuses a round for its budget answers with error code ``budget_exhausted``; with
``privacy.budget.on_exhausted = "stop"`` the tracker ends the job with that error. Under
``"continue"`` the round goes on without it; but a spent budget stays spent (the party's ledger
only grows), so when the parties that refused leave fewer than ``selection.min_parties`` that
could still train, the round loop ends the job at once with :func:`spent_budgets` instead of
retrying a round that would only be refused again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from fedsilo.config import JobConfig, OnBudgetExhausted
from fedsilo.errors import BudgetExhaustedError, ErrorCode, ProtocolError
from fedsilo.protocol.bodies import RecordSpend, parse_body
from fedsilo.protocol.messages import Message
from fedsilo.runtime.failures import failure_detail, named, natural

log = logging.getLogger(__name__)


def record_dp_proposal(job: JobConfig) -> dict[str, Any] | None:
    """The ``record_dp`` entry of every party's setup task (``None`` when it is off)."""
    dp = job.privacy.record_dp
    if not dp.enabled:
        return None
    return {
        "noise_multiplier": dp.noise_multiplier,
        "target_epsilon": dp.target_epsilon,
        "max_grad_norm": dp.max_grad_norm,
        "accounting": dp.accounting.value,
        "delta": job.privacy.delta,
        "rounds": job.rounds,
        "batch_size": job.training.batch_size,
        "epochs": job.training.epochs,
    }


class RecordSpendTracker:
    """Collects each party's reported record-level spend, round after round."""

    def __init__(self, job: JobConfig) -> None:
        self._enabled = job.privacy.record_dp.enabled
        self._stop = job.privacy.budget.on_exhausted is OnBudgetExhausted.STOP
        self._delta = job.privacy.delta
        self._method = job.privacy.record_dp.accounting.value
        self._parties: dict[str, dict[str, Any]] = {}
        self._said: tuple[int, set[str]] = (0, set())  # a round, the refusals logged in it

    def restore(self, history: Sequence[Any]) -> None:
        """Continue a resumed job: each party's last reported spend from completed rounds."""
        for record in history:
            parties = record.privacy.get("parties") if record.privacy else None
            if record.privacy.get("level") == "record" and isinstance(parties, dict):
                self._parties.update({p: dict(v) for p, v in parties.items()})

    def observe(
        self, rnd: int, replies: Mapping[str, Message], accepted: Collection[str]
    ) -> dict[str, Any]:
        """Read this attempt's replies; the round's privacy record (``{}`` without DP)."""
        for party, why in budget_refusals(replies).items():
            if self._stop:
                raise BudgetExhaustedError(
                    f"round {rnd}: {why}. The job stops because "
                    'privacy.budget.on_exhausted = "stop" (use "continue" to go on '
                    "without this party)"
                )
            if self._said[0] != rnd:
                self._said = (rnd, set())
            if party not in self._said[1]:  # a retried round is refused again: said once
                self._said[1].add(party)
                log.warning(
                    "round %d: %s; the round goes on without it if enough others can", rnd, why
                )
        if not self._enabled:
            return {}
        for party in accepted:
            try:
                body = parse_body(SpendOnly, replies[party])
            except ProtocolError as exc:
                log.warning("round %d: party '%s' reported no valid spend: %s", rnd, party, exc)
                continue
            if body.privacy is not None:
                spend = body.privacy.model_dump(mode="json", exclude={"level"})
                self._parties[party] = spend
        eps = [float(p["epsilon"]) for p in self._parties.values()]
        return {
            "level": "record",
            "epsilon": max(eps) if eps else 0.0,
            "delta": self._delta,
            "accounting": self._method,
            "parties": {p: dict(v) for p, v in sorted(self._parties.items())},
        }


def budget_refusals(replies: Mapping[str, Message]) -> dict[str, str]:
    """The parties whose reply refused the task for their privacy budget (error code
    ``budget_exhausted``, never the text), each with its message, sorted by name."""
    return {
        party: reply.error or ""
        for party, reply in sorted(replies.items())
        if reply.error_code is ErrorCode.BUDGET_EXHAUSTED
    }


def spent_budgets(
    rnd: int, refusals: Mapping[str, str], able: Sequence[str], need: int
) -> BudgetExhaustedError:
    """The error that ends a job whose round ``rnd`` cannot be trained: ``refusals`` (party:
    its message) spent their budgets, leaving ``able`` parties, fewer than ``need``."""
    spent = sorted(refusals, key=natural)
    if len(spent) == 1:
        who = f"party '{spent[0]}' has spent its"
    else:
        who = f"parties {named(spent)} have spent their"
    left = f"{len(able)} part{'y' if len(able) == 1 else 'ies'}"
    if able:
        left += f" ({named(able)})"
    return BudgetExhaustedError(
        f"round {rnd}: the job stops: {who} privacy budget (refused with budget_exhausted), "
        f"which leaves {left} that could train, fewer than selection.min_parties = {need}. "
        "A spent budget stays spent, so the round is not retried. The parties said: "
        + failure_detail(refusals)  # refusals alike but for the party's name: said once
    )


class SpendOnly(BaseModel):
    """The record-DP spend of any fit reply (plain, clipped or masked); the rest is ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    privacy: RecordSpend | None = None
