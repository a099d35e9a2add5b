"""(epsilon, delta) for the Gaussian mechanisms fedsilo runs, from Google's ``dp-accounting``.

Both DP levels reduce to the same event: a Poisson-sampled Gaussian mechanism composed over a
number of steps.

* Record-level DP-SGD inside a party: ``sample_rate`` = expected batch size / the party's rows,
  ``steps`` = optimizer steps summed over every round the party joined.
* Client-level DP-FedAvg selects a fixed-size random subset of ``k`` of the ``N`` parties
  each round, which is not Poisson sampling: :class:`FixedSizeGaussianSpend` accounts it as
  sampling without replacement (Wang, Balle & Kasiviswanathan 2019, Thm. 27) under the
  replace-one-party relation, the analysis ``dp_accounting`` has for fixed-size samples.
  With every party every round (``k = N``) it is a plain :class:`GaussianSpend` with
  ``sample_rate = 1``.

``sample_rate == 1`` (every record or every party, every time) is the plain composed Gaussian,
with no amplification by sampling. Analytics answers with Laplace noise are
:class:`LaplaceSpend` events (pure epsilon-DP). Nothing here is our own maths: the events are
composed and converted by ``dp_accounting``'s RDP or PLD accountant; with Laplace events the
result is also capped by basic composition (Gaussian part + the Laplace epsilons), which is
just as valid and tighter for a few Laplace releases.

:func:`plan_spend` answers before anything runs (``fedsilo privacy plan``, and a simulation's
check of each party's budget before round 1): the epsilon a planned run reaches, or the noise
for a target, and how many of its rounds a budget affords.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dp_accounting (and SciPy under it) loads on the first accounting, not with
    import dp_accounting  # the job config that names an AccountingMethod

from fedsilo.errors import ConfigError


class AccountingMethod(enum.Enum):
    RDP = "rdp"
    PLD = "pld"


@dataclass(frozen=True)
class GaussianSpend:
    """A Poisson-sampled Gaussian mechanism run ``steps`` times."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ConfigError(
                f"noise multiplier must be a positive number, got {self.noise_multiplier!r}"
            )
        if not (0 < self.sample_rate <= 1):
            raise ConfigError(f"sample rate must be in (0, 1], got {self.sample_rate!r}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps!r}")

    def event(self) -> dp_accounting.DpEvent:
        import dp_accounting

        gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        single: dp_accounting.DpEvent = (
            gaussian
            if self.sample_rate >= 1
            else dp_accounting.PoissonSampledDpEvent(self.sample_rate, gaussian)
        )
        return dp_accounting.SelfComposedDpEvent(single, self.steps)


@dataclass(frozen=True)
class FixedSizeGaussianSpend:
    """A Gaussian mechanism on a uniformly random ``sample_size``-subset of ``population``,
    run ``steps`` times; epsilon is for the replace-one relation (``population`` public).

    ``noise_multiplier`` is the noise std over the replace-one L2 sensitivity (for a sum of
    contributions clipped to norm ``C`` that sensitivity is ``2 C``, twice add/remove's).
    """

    noise_multiplier: float
    sample_size: int
    population: int
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ConfigError(
                f"noise multiplier must be a positive number, got {self.noise_multiplier!r}"
            )
        if not (0 < self.sample_size <= self.population):
            raise ConfigError(
                f"sample size must be in 1..{self.population}, got {self.sample_size!r}"
            )
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps!r}")

    def event(self) -> dp_accounting.DpEvent:
        import dp_accounting

        gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        sampled = dp_accounting.SampledWithoutReplacementDpEvent(
            self.population, self.sample_size, gaussian
        )
        return dp_accounting.SelfComposedDpEvent(sampled, self.steps)


@dataclass(frozen=True)
class LaplaceSpend:
    """A Laplace mechanism with pure ``epsilon`` (scale = L1 sensitivity / epsilon), ``steps`` times."""

    epsilon: float
    steps: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"Laplace epsilon must be a positive number, got {self.epsilon!r}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps!r}")

    def event(self) -> dp_accounting.DpEvent:
        import dp_accounting

        # dp_accounting's noise multiplier is scale / sensitivity = 1 / epsilon
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.LaplaceDpEvent(1.0 / self.epsilon), self.steps
        )


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}; a common choice is 1e-5")


def _accountant(
    method: AccountingMethod, *, replace_one: bool = False
) -> dp_accounting.PrivacyAccountant:
    import dp_accounting
    from dp_accounting import pld, rdp

    if replace_one:
        if method is not AccountingMethod.RDP:
            raise ConfigError(
                "fixed-size sampling is accounted with the RDP accountant only; use 'rdp'"
            )
        return rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    if method is AccountingMethod.RDP:
        return rdp.RdpAccountant()
    return pld.PLDAccountant()


Spend = GaussianSpend | FixedSizeGaussianSpend | LaplaceSpend


def epsilon(
    spends: Spend | Sequence[Spend],
    delta: float,
    method: AccountingMethod = AccountingMethod.RDP,
) -> float:
    """Epsilon at ``delta`` for one spend or the composition of several (0 for no steps).

    Fixed-size spends (replace-one relation) and Poisson spends (add/remove) do not compose
    into one epsilon; mixing them is an error. With Laplace spends the result is the smaller
    of the accountant's composition and basic composition (the rest at ``delta`` plus the
    Laplace epsilons): both are valid bounds.
    """
    _check_delta(delta)
    items = [spends] if isinstance(spends, Spend) else list(spends)
    fixed = [s for s in items if isinstance(s, FixedSizeGaussianSpend)]
    if fixed and len(fixed) != len(items):
        raise ConfigError("fixed-size and Poisson-sampled spends use different relations")
    # Repeats of one mechanism compose to one self-composed event (same epsilon, one RDP
    # computation instead of one per round).
    merged: dict[Spend, int] = {}
    for s in items:
        if s.steps > 0:
            key = dataclasses.replace(s, steps=1)
            merged[key] = merged.get(key, 0) + s.steps
    if not merged:
        return 0.0
    accountant = _accountant(method, replace_one=bool(fixed))
    with _quiet_unconverged_orders():  # benign where it happens: see its docstring
        for spend, steps in merged.items():
            accountant.compose(dataclasses.replace(spend, steps=steps).event())
    composed = float(accountant.get_epsilon(delta))
    laplace = [(s, k) for s, k in merged.items() if isinstance(s, LaplaceSpend)]
    if not laplace:
        return composed
    rest = [
        dataclasses.replace(s, steps=k)
        for s, k in merged.items()
        if not isinstance(s, LaplaceSpend)
    ]
    basic = sum(s.epsilon * k for s, k in laplace) + (epsilon(rest, delta, method) if rest else 0.0)
    return min(composed, basic)


class _UnconvergedOrders(logging.Filter):
    """Drops dp_accounting's "failed to converge" warning, only in threads inside
    :func:`_quiet_unconverged_orders` (one filter on the ``absl`` logger, added once)."""

    MESSAGE = "_compute_log_a_frac failed to converge"

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = getattr(self.inside, "depth", 0) > 0
        return not (quiet and str(record.msg).startswith(self.MESSAGE))


_FILTER_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_unconverged_orders() -> Iterator[None]:
    """Silence, in this thread only, dp_accounting's warning that it dropped an RDP order.

    ``_compute_log_a_frac`` sums a series for each fractional order; when the sample rate is
    near 1/2 its exponential factors cancel and the terms fall off only polynomially, so 1000
    terms are not enough and dp_accounting drops the order (infinite RDP) with an absl
    warning. It is met at small parties: 34 rows, batch 16 (q = 0.47), noise 4.63, orders
    1.1 to 1.9 (``tests/privacy/test_accounting_orders.py``). A dropped order can only make
    epsilon larger, never smaller, and an order ``a < 2`` gives at least
    ``log1p(-1/a) - log(delta a) / (a - 1)`` (above 11 at delta 1e-5) whatever its RDP, so it
    is never the optimum for the budgets parties set: the warning tells nothing to act on.
    Every other absl message, and this one from any other caller or thread, still shows
    (setting the absl logger's level instead silenced other threads' warnings and, raced by
    the parties' threads, let this one through).
    """
    absl = logging.getLogger("absl")  # dp_accounting, hence absl, is imported by now
    with _FILTER_LOCK:
        found = [f for f in absl.filters if isinstance(f, _UnconvergedOrders)]
        quiet = found[0] if found else _UnconvergedOrders()
        if not found:
            absl.addFilter(quiet)
    depth = getattr(quiet.inside, "depth", 0)
    quiet.inside.depth = depth + 1
    try:
        yield
    finally:
        quiet.inside.depth = depth


def noise_for_epsilon(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    method: AccountingMethod = AccountingMethod.RDP,
    *,
    tolerance: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``tolerance``) whose epsilon is <= the target."""
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ConfigError(f"target epsilon must be positive, got {target_epsilon!r}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1 to find a noise multiplier, got {steps}")

    def eps(noise: float) -> float:
        return epsilon(GaussianSpend(noise, sample_rate, steps), delta, method)

    low, high = 1e-2, 1.0
    while eps(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ConfigError(
                f"no noise multiplier up to 1e4 reaches epsilon {target_epsilon} at delta "
                f"{delta} over {steps} steps; raise the target or lower the steps"
            )
    while high - low > tolerance:
        mid = (low + high) / 2
        if eps(mid) > target_epsilon:
            low = mid
        else:
            high = mid
    return high


def over_budget(spent: float, max_epsilon: float) -> bool:
    """Whether ``spent`` passes ``max_epsilon``: a ledger refuses a release that would."""
    return spent > max_epsilon + 1e-12  # equal, up to rounding, is within


@dataclass(frozen=True)
class SpendPlan:
    """What ``fedsilo privacy plan`` answers before anything runs: a Poisson-sampled Gaussian
    run ``steps_per_round`` times a round for ``rounds`` rounds, and the epsilon it reaches."""

    noise_multiplier: float
    sample_rate: float
    rounds: int
    steps_per_round: int
    delta: float
    method: AccountingMethod
    epsilon: float
    target_epsilon: float | None = None

    @property
    def steps(self) -> int:
        return self.rounds * self.steps_per_round

    def spend(self, rounds: int) -> GaussianSpend:
        """The event of ``rounds`` rounds of the plan (as a ledger composes them)."""
        return GaussianSpend(self.noise_multiplier, self.sample_rate, rounds * self.steps_per_round)

    def rounds_within(self, max_epsilon: float) -> int:
        """How many rounds of the plan ``max_epsilon`` affords, checked as a ledger checks a
        release (:func:`over_budget`): ``rounds`` when the planned epsilon is within it."""
        if not over_budget(self.epsilon, max_epsilon):
            return self.rounds
        within, over = 0, self.rounds  # epsilon grows with the rounds: bisect
        while over - within > 1:
            mid = (within + over) // 2
            if over_budget(epsilon(self.spend(mid), self.delta, self.method), max_epsilon):
                over = mid
            else:
                within = mid
        return within


def plan_spend(
    rounds: int,
    sample_rate: float,
    delta: float,
    *,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    steps_per_round: int = 1,
    method: AccountingMethod = AccountingMethod.RDP,
) -> SpendPlan:
    """The epsilon ``rounds`` rounds spend with ``noise_multiplier``, or with the noise that
    keeps them within ``target_epsilon`` (give exactly one): ``fedsilo privacy plan``."""
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError("give exactly one of a noise multiplier or a target epsilon")
    steps = rounds * steps_per_round
    if noise_multiplier is None:
        assert target_epsilon is not None
        noise_multiplier = noise_for_epsilon(
            target_epsilon, delta, sample_rate, steps, method, tolerance=1e-4
        )
    spent = epsilon(GaussianSpend(noise_multiplier, sample_rate, steps), delta, method)
    return SpendPlan(
        noise_multiplier, sample_rate, rounds, steps_per_round, delta, method, spent, target_epsilon
    )
