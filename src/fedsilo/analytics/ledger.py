"""Per-party privacy ledgers for analytics: one JSON file per party, checked before release.

Every released answer is an event in the ledger of every party whose rows it used. The total
is the composition of the events: Gaussian events through the accountant
(:func:`fedsilo.privacy.accounting.epsilon`, at the job's delta), Laplace events by basic
composition (their epsilons add). :meth:`Ledger.check` refuses a query that would push any
party past its declared ``max_epsilon`` *before* any party is asked; :meth:`Ledger.charge`
records it once the answer is computed, before it is returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedsilo.analytics.config import Mechanism
from fedsilo.analytics.dp import NoisePlan
from fedsilo.errors import BudgetExhaustedError
from fedsilo.privacy.accounting import AccountingMethod, GaussianSpend, epsilon


@dataclass(frozen=True)
class Ledger:
    directory: Path
    delta: float
    method: AccountingMethod = AccountingMethod.RDP

    def path(self, party: str) -> Path:
        return self.directory / f"{party}.json"

    def entries(self, party: str) -> list[dict[str, Any]]:
        p = self.path(party)
        if not p.exists():
            return []
        return list(json.loads(p.read_text(encoding="utf-8"))["entries"])

    def total(self, entries: list[dict[str, Any]]) -> float:
        spends = [
            GaussianSpend(float(e["noise_multiplier"]), 1.0, 1)
            for e in entries
            if e["mechanism"] == Mechanism.GAUSSIAN.value
        ]
        pure = sum(float(e["epsilon"]) for e in entries if e["mechanism"] == "laplace")
        return (epsilon(spends, self.delta, self.method) if spends else 0.0) + pure

    def spent(self, party: str) -> float:
        return self.total(self.entries(party))

    def _entry(self, noise: NoisePlan, query: str) -> dict[str, Any]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "query": query,
            "mechanism": noise.mechanism.value,
            "noise_multiplier": noise.noise_multiplier,
            "epsilon": noise.epsilon,
            "delta": noise.delta,
        }

    def check(self, budgets: Mapping[str, float], noise: NoisePlan, query: str) -> None:
        """Raise :class:`BudgetExhaustedError` naming the first party the query would overspend."""
        if noise.mechanism is Mechanism.NONE:
            return
        for party, budget in sorted(budgets.items()):
            before = self.entries(party)
            after = self.total([*before, self._entry(noise, query)])
            if after > budget + 1e-12:
                raise BudgetExhaustedError(
                    f"query refused: party '{party}' has a budget of epsilon {budget:g}, has "
                    f"spent {self.total(before):.4g}, and this query costs {noise.epsilon:.4g} "
                    f"(total {after:.4g} at delta {self.delta:g}); lower the query's epsilon, "
                    f"raise the party's max_epsilon, or start a new ledger"
                )

    def charge(
        self, budgets: Mapping[str, float], noise: NoisePlan, query: str
    ) -> dict[str, float]:
        """Record the query for every party; return each party's new total."""
        totals: dict[str, float] = {}
        if noise.mechanism is Mechanism.NONE:
            return {p: self.spent(p) for p in budgets}
        self.directory.mkdir(parents=True, exist_ok=True)
        for party, budget in sorted(budgets.items()):
            entries = [*self.entries(party), self._entry(noise, query)]
            doc = {"party": party, "max_epsilon": budget, "delta": self.delta, "entries": entries}
            tmp = self.path(party).with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
            os.replace(tmp, self.path(party))
            totals[party] = self.total(entries)
        return totals
