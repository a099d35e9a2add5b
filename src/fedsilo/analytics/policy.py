"""A party's own decision on one query: its policy first, then the price in its ledger.

The coordinator's QUERY task carries the job's privacy settings (mechanism, epsilon or noise
multiplier, delta) and its ``min_group_size``. The party takes none of them on faith:
:func:`admit` checks them against the party's :class:`~fedsilo.analytics.config.QueryPolicy`
and turns the request into the ledger event the party will be charged
(:class:`~fedsilo.privacy.accounting.GaussianSpend` with the noise multiplier the party derives
itself from the plan, or :class:`~fedsilo.privacy.accounting.LaplaceSpend`), priced at the
party's own delta. Refusals are :class:`~fedsilo.errors.RefusedError` naming the rule and where
it is set (``[analytics.policy]`` in party.toml; a simulation job's ``[policy]``).

What this does not do: the noise is added where the answer is released (by the coordinator,
after the sum). A party can refuse to take part in a release it does not agree to, and
charges its ledger for every one it does take part in, so its budget bounds how many answers
it ever contributes to; it cannot see whether a deviating coordinator added the noise it
declared (without secure aggregation the coordinator sees each party's statistics anyway).
"""

from __future__ import annotations

from collections.abc import Mapping

from fedsilo.analytics.bodies import Spent
from fedsilo.analytics.config import Mechanism, PrivacySettings, QueryPolicy
from fedsilo.analytics.dp import calibrate
from fedsilo.analytics.plan import QueryPlan
from fedsilo.errors import (
    BudgetExhaustedError,
    ErrorCode,
    FedsiloError,
    ProtocolError,
    RefusedError,
)
from fedsilo.privacy.accounting import GaussianSpend, LaplaceSpend
from fedsilo.privacy.guard import PrivacyGuard
from fedsilo.privacy.ledger import Event
from fedsilo.protocol.bodies import parse_body
from fedsilo.protocol.messages import Message


def admit(
    policy: QueryPolicy,
    guard: PrivacyGuard,
    plan: QueryPlan,
    requested: PrivacySettings,
    min_group_size: float,
) -> Event | None:
    """The ledger event this query costs the party, or a refusal naming the rule.

    None for an exact answer the policy allows (``allow_exact = true``): nothing to charge.
    """
    party = guard.party
    mechanism = requested.mechanism
    if mechanism is Mechanism.NONE and not policy.allow_exact:
        raise RefusedError(
            f"party '{party}' refuses exact answers (mechanism 'none'): its policy has "
            "allow_exact = false. Ask with mechanism 'gaussian' or 'laplace'; only the party "
            f"can allow exact answers ({policy.setting('allow_exact = true')})"
        )
    if min_group_size < policy.min_group_size:
        raise RefusedError(
            f"party '{party}' refuses min_group_size {min_group_size:g}: its policy requires "
            f"groups of at least {policy.min_group_size:g} ({policy.setting('min_group_size')})"
        )
    if mechanism is Mechanism.NONE:
        return None
    if mechanism not in policy.mechanisms:
        allowed = ", ".join(m.value for m in policy.mechanisms) or "none"
        raise RefusedError(
            f"party '{party}' refuses mechanism '{mechanism.value}': its policy allows "
            f"{allowed} ({policy.setting('mechanisms')})"
        )
    noise = calibrate(plan, requested)
    spend: Event
    if mechanism is Mechanism.LAPLACE:
        spend = LaplaceSpend(noise.epsilon)
    else:
        assert noise.noise_multiplier is not None
        spend = GaussianSpend(noise.noise_multiplier, 1.0, 1)
    cap = policy.max_query_epsilon
    if cap is not None:
        cost = guard.query_cost(spend, requested.delta, requested.accounting)
        if cost > cap + 1e-12:
            delta = guard.budget(requested.delta, requested.accounting).delta
            raise RefusedError(
                f"party '{party}' refuses a query costing epsilon {cost:.4g} (at delta "
                f"{delta:g}): its policy caps one query at epsilon {cap:g} "
                f"({policy.setting('max_query_epsilon')})"
            )
    return spend


def refusal(codes: Mapping[str, ErrorCode | None]) -> type[FedsiloError]:
    """The error to raise for failed parties: a party's refusal if any refused (its budget
    first, then its policy), else a protocol failure."""
    found = set(codes.values())
    if ErrorCode.BUDGET_EXHAUSTED in found:
        return BudgetExhaustedError
    if ErrorCode.REFUSED in found:
        return RefusedError
    return ProtocolError


def spend_reports(replies: Mapping[str, Message]) -> dict[str, tuple[float, float | None]]:
    """Each party's reported (total spent, budget); a malformed report is a ProtocolError
    naming the party, round and field."""
    out: dict[str, tuple[float, float | None]] = {}
    for party, reply in sorted(replies.items()):
        report = parse_body(Spent, reply, where=f"party {party!r}").privacy
        if report is not None:
            out[party] = (report.spent, report.budget)
    return out
