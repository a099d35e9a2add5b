"""dp_accounting's "failed to converge" warning: benign where fedsilo meets it, and silenced
only inside fedsilo's own accounting call, whatever other threads do meanwhile."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator

import dp_accounting
import pytest
from absl import logging as absl_logging
from dp_accounting.rdp import rdp_privacy_accountant

from fedsilo.privacy.accounting import GaussianSpend, epsilon

# party-1 of examples/hospitals_dp.toml: 34 training rows, batch 16 (q = 16/34), 2 steps a
# round, 20 rounds, the noise multiplier it finds for target epsilon 3 at delta 1e-5
Q, SIGMA, STEPS, DELTA = 16 / 34, 4.63360595703125, 40, 1e-5
UNCONVERGED = "_compute_log_a_frac failed to converge"


def _unconverged(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith(UNCONVERGED)]


def test_dp_accounting_drops_orders_below_two_here_which_could_not_give_epsilon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accountant = rdp_privacy_accountant.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(Q, dp_accounting.GaussianDpEvent(SIGMA))
    with caplog.at_level(logging.WARNING):
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, STEPS))
    reference, order = accountant.get_epsilon_and_optimal_order(DELTA)

    dropped = sorted(
        o for o, r in zip(accountant._orders, accountant._rdp, strict=True) if r == math.inf
    )
    assert dropped == pytest.approx([1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9])
    assert len(_unconverged(caplog.records)) == len(dropped)
    # A dropped order counts as infinite RDP: epsilon can only come out larger, never smaller.
    # And none of them could have given it: at order a, epsilon >= log1p(-1/a)
    # - log(delta a) / (a - 1) (the conversion dp_accounting uses) whatever the RDP, which
    # is above 11 for a <= 1.9 at delta 1e-5; the optimum here is order 7.2, epsilon 3.0.
    floors = [math.log1p(-1 / a) - math.log(DELTA * a) / (a - 1) for a in dropped]
    assert min(floors) > 11 > reference
    assert order == pytest.approx(7.2)
    assert epsilon(GaussianSpend(SIGMA, Q, STEPS), DELTA) == reference == pytest.approx(3.0, 1e-4)


@pytest.fixture
def paced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, Callable[[], None]], None]]:
    """``pace(thread_name, hold)``: the first time dp_accounting computes an order in that
    thread, it calls ``hold()`` first (to interleave threads exactly)."""
    original = rdp_privacy_accountant._compute_log_a_frac
    holds: dict[str, Callable[[], None]] = {}

    def frac(q: float, sigma: float, alpha: float) -> float:
        hold = holds.pop(threading.current_thread().name, None)
        if hold is not None:
            hold()
        return float(original(q, sigma, alpha))

    monkeypatch.setattr(rdp_privacy_accountant, "_compute_log_a_frac", frac)
    yield holds.__setitem__


def test_a_thread_leaving_its_accounting_does_not_unsilence_another_still_inside(
    paced: Callable[[str, Callable[[], None]], None], caplog: pytest.LogCaptureFixture
) -> None:
    # The party threads of a simulation: B enters its accounting, A enters, B leaves while A
    # is still computing the orders that do not converge.
    absl = logging.getLogger("absl")
    level = absl.level
    b_inside, a_inside, b_left = threading.Event(), threading.Event(), threading.Event()
    paced("B", lambda: (b_inside.set(), a_inside.wait(10)))
    paced("A", lambda: (a_inside.set(), b_left.wait(10)))
    b = threading.Thread(name="B", target=lambda: epsilon(GaussianSpend(1.0, 0.01, 10), DELTA))
    a = threading.Thread(name="A", target=lambda: epsilon(GaussianSpend(SIGMA, Q, STEPS), DELTA))

    with caplog.at_level(logging.WARNING):
        b.start()
        assert b_inside.wait(10)
        a.start()
        b.join(10)
        b_left.set()
        a.join(10)

    assert not b.is_alive() and not a.is_alive()
    assert _unconverged(caplog.records) == []
    assert absl.level == level  # and nothing was left changed for the rest of the process


def test_warnings_from_other_threads_still_show_while_fedsilo_accounts(
    paced: Callable[[str, Callable[[], None]], None], caplog: pytest.LogCaptureFixture
) -> None:
    def others_warn() -> None:  # another user of dp_accounting (or of absl) meanwhile
        absl_logging.warning("%s after 1000 iterations (someone else's call)", UNCONVERGED)
        absl_logging.warning("an unrelated absl warning")

    def meanwhile() -> None:
        other = threading.Thread(target=others_warn)
        other.start()
        other.join(10)

    paced("A", meanwhile)
    a = threading.Thread(name="A", target=lambda: epsilon(GaussianSpend(SIGMA, Q, STEPS), DELTA))
    with caplog.at_level(logging.WARNING):
        a.start()
        a.join(10)

    shown = [r.getMessage() for r in caplog.records if r.name == "absl"]
    assert shown == [
        f"{UNCONVERGED} after 1000 iterations (someone else's call)",
        "an unrelated absl warning",
    ]
