"""Before round 1 of a simulation: whose privacy budget runs out during the job, and when.

In a simulation the job file stands in for every party's own configuration, so both numbers
are known before the first round: each party's budget (``[privacy.budget]``) and, from its
setup reply, the record-level DP-SGD it will run (the noise multiplier it chose for its own
rows, from ``target_epsilon``, or the job's ``noise_multiplier``). The epsilon that plan
reaches over the job's rounds is computed as ``fedsilo privacy plan`` computes it
(:func:`~fedsilo.privacy.accounting.plan_spend`), and the rounds the budget affords as the
party's ledger checks each round (:meth:`~fedsilo.privacy.accounting.SpendPlan.rounds_within`):
a simulated party's ledger starts empty and each of its rounds charges the same event.

For a party whose budget runs out before the last round:

* when every round selects every party, the party will refuse every round from the one its
  budget runs out at (a retried round is charged again: sooner, never later). When the job
  would then certainly stop, it is refused before training with
  :class:`~fedsilo.errors.BudgetExhaustedError` saying why: under
  ``privacy.budget.on_exhausted = "stop"`` (it stops at the first refusal), and under
  ``"continue"`` when the parties out of budget leave fewer than ``selection.min_parties``
  (it stops there too, with nothing to show for the budget spent). Otherwise the party is
  warned about, once, with its budget, the planned epsilon and the round it refuses from;
* when rounds select some of the parties, which rounds a party trains in is not known
  before: the warning says how many rounds of training its budget affords, and the job is
  never refused (the party may not be selected that often).

A deployed coordinator does not know its parties' budgets (each keeps its own in its
``party.toml``) and makes no such check: the parties refuse round by round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedsilo.config import JobConfig, OnBudgetExhausted
from fedsilo.errors import BudgetExhaustedError
from fedsilo.privacy.accounting import AccountingMethod, SpendPlan, plan_spend
from fedsilo.privacy.dp_sgd import sample_rate, steps_per_round
from fedsilo.runtime.failures import failure_detail, named, natural
from fedsilo.runtime.setup import SetupResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shortfall:
    """A party whose budget affords ``affords`` of the job's rounds, fewer than all."""

    party: str
    max_epsilon: float
    plan: SpendPlan  # the party's DP-SGD over all the job's rounds
    affords: int

    @property
    def refuses_from(self) -> int:
        """The first round it refuses, when it trains in every round."""
        return self.affords + 1

    def reason(self, every_round: bool) -> str:
        """Why, without the party's name: ``its privacy budget, epsilon 2.5 ...``."""
        p = self.plan
        budget = f"its privacy budget, epsilon {self.max_epsilon:g} at delta {p.delta:g}"
        planned = (
            f"epsilon {p.epsilon:.4g} (noise multiplier {p.noise_multiplier:.4g}, sample rate "
            f"{p.sample_rate:.4g}, {p.steps_per_round} step{'' if p.steps_per_round == 1 else 's'} "
            f"a round, {p.method.value})"
        )
        if every_round:
            then = (
                "it will refuse every round"
                if self.affords == 0
                else f"it will refuse to train from round {self.refuses_from} on"
            )
            return (
                f"{budget}, runs out at round {self.refuses_from} of {p.rounds}: the job's "
                f"plan takes it to {planned}, so {then}"
            )
        return (
            f"{budget}, affords {self.affords} of the job's {p.rounds} rounds: if it trains in "
            f"all of them the job's plan takes it to {planned}, so it will refuse to train "
            f"once it has trained in {self.affords}"
        )


def budget_shortfalls(job: JobConfig, setup: SetupResult) -> list[Shortfall]:
    """The parties whose budget, as the job states it, affords fewer rounds than the job has
    (by name); none without record-level DP or budgets."""
    if not job.privacy.record_dp.enabled:
        return []
    batch, epochs = job.training.batch_size, job.training.epochs
    found = []
    known: dict[tuple[object, ...], tuple[SpendPlan, int]] = {}  # parties alike: computed once
    for party in sorted(setup.parties, key=natural):
        max_epsilon = job.privacy.budget.max_epsilon_for(party)
        reply = setup.replies.get(party)
        if max_epsilon is None or reply is None or reply.record_dp is None:
            continue
        dp, rows = reply.record_dp, reply.train_examples  # the party's own plan for its rows
        key = (rows, dp.noise_multiplier, dp.delta, dp.accounting, max_epsilon)
        if key not in known:
            plan = plan_spend(
                job.rounds,
                sample_rate(batch, rows),
                dp.delta,
                noise_multiplier=dp.noise_multiplier,
                steps_per_round=steps_per_round(batch, rows, epochs),
                method=AccountingMethod(dp.accounting),
            )
            known[key] = plan, plan.rounds_within(max_epsilon)
        plan, affords = known[key]
        if affords < job.rounds:
            found.append(Shortfall(party, max_epsilon, plan, affords))
    return found


def check_budgets(
    job: JobConfig, setup: SetupResult, on_warning: Callable[[str], None] | None = None
) -> None:
    """Refuse the job (:class:`BudgetExhaustedError`) when a party's budget would certainly
    stop it; else warn of each party whose budget runs out before the last round: logged,
    and handed to ``on_warning`` (the CLI prints it)."""
    shortfalls = budget_shortfalls(job, setup)
    if not shortfalls:
        return
    n = len(setup.parties)
    every_round = job.selection.per_round(n) == n
    if every_round:
        stop = _certain_stop(job, n, shortfalls)
        if stop is not None:
            raise stop
    for s in shortfalls:
        text = f"party '{s.party}': {s.reason(every_round)}. {_fix(job, [s])}"
        log.warning("%s", text)
        if on_warning is not None:
            on_warning(text)


def _certain_stop(
    job: JobConfig, n: int, shortfalls: Sequence[Shortfall]
) -> BudgetExhaustedError | None:
    """The error refusing a job whose every party trains every round and which would stop
    when budgets run out; ``None`` if it would run to its last round."""
    detail = failure_detail({s.party: s.reason(every_round=True) for s in shortfalls})
    fix = _fix(job, shortfalls)
    if job.privacy.budget.on_exhausted is OnBudgetExhausted.STOP:
        first = min(s.refuses_from for s in shortfalls)
        who = [s.party for s in shortfalls if s.refuses_from == first]
        them = "it" if len(who) == 1 else "them"
        return BudgetExhaustedError(
            f"the job is refused before training: {_who(who)} would refuse round {first} of "
            f"{job.rounds} for {_their(who)} privacy budget, and the job stops at the first "
            f'such refusal (privacy.budget.on_exhausted = "stop"). {detail}. {fix}; or set '
            f'on_exhausted = "continue" to go on without {them}'
        )
    need = job.selection.min_parties
    for rnd in sorted({s.refuses_from for s in shortfalls}):
        out = [s.party for s in shortfalls if s.refuses_from <= rnd]
        if n - len(out) < need:
            left = n - len(out)
            return BudgetExhaustedError(
                f"the job is refused before training: from round {rnd} of {job.rounds}, "
                f"{_who(out)} would refuse to train for {_their(out)} privacy budget, which "
                f"leaves {left} part{'y' if left == 1 else 'ies'} that could train, fewer "
                f"than selection.min_parties = {need}: the job would stop there. {detail}. "
                f"{fix}"
            )
    return None


def _who(parties: Sequence[str]) -> str:
    return f"party {named(parties)}" if len(parties) == 1 else f"parties {named(parties)}"


def _their(parties: Sequence[str]) -> str:
    return "its" if len(parties) == 1 else "their"


def _fix(job: JobConfig, shortfalls: Sequence[Shortfall]) -> str:
    """How to make the budgets last: raise them, or spend less. With ``target_epsilon`` each
    party finds its noise for the target over all the rounds, so fewer rounds spend as much."""
    budget, dp = job.privacy.budget, job.privacy.record_dp
    if len(shortfalls) == 1:
        s = shortfalls[0]
        key = (
            f'privacy.budget.parties."{s.party}"'
            if s.party in budget.parties
            else "privacy.budget.max_epsilon"
        )
        if dp.target_epsilon is not None:
            return f"Raise its {key} or lower privacy.record_dp.target_epsilon to {s.max_epsilon:g}"
        rounds = f", or run at most {s.affords} rounds" if s.affords else ""
        return f"Raise its {key} or privacy.record_dp.noise_multiplier{rounds}"
    if dp.target_epsilon is not None:
        return "Raise their max_epsilon (privacy.budget) or lower privacy.record_dp.target_epsilon"
    return (
        "Raise their max_epsilon (privacy.budget) or privacy.record_dp.noise_multiplier, or "
        "run fewer rounds"
    )
