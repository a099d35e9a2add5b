"""``fedsilo privacy audit``: measure what one training run leaks about one party's rows.

The one-run audit of Steinke, Nasr & Jagielski 2023 ("Privacy Auditing with One (1) Training
Run"), with label-flipped canaries (input-space canaries, as in Nasr et al. 2023, "Tight
Auditing of Differentially Private Machine Learning"):

1. take ``m`` rows of the audited party (out of its data, so they are in no other role),
   give each a wrong label drawn uniformly from the other classes: the canaries;
2. flip a fair secret coin per canary; the party trains on its remaining rows plus the
   canaries whose coin came up "in" (they are never held out: :class:`PartyAgent` appends
   them after its train/held-out split and leaves them out of its preprocessing statistics);
3. run the job once, unchanged otherwise (same round loop, same DP, same accountant) through
   :func:`fedsilo.simulation.simulate`;
4. score every canary by the final global model's log-probability of its flipped label (a
   trained-on canary is fitted, a left-out one is not) and run the membership test of
   :mod:`fedsilo.privacy.one_run`: attack AUC, TPR at a low FPR, and the epsilon lower bound
   at the stated confidence, reported beside the accountant's epsilon of that party.

A correct DP implementation keeps the lower bound at or below the accountant's epsilon (except
with probability ``1 - confidence``); a bound above it is evidence of a privacy bug. A bound
far below it says only that this attack, with ``m`` canaries, could not show more: the bound of
a perfect attack grows like ``log m``.

Randomness: the canary choice, their labels and the coins are the auditor's own secret. They
protect nothing (the audit measures the training mechanism, which never sees the coins), so
they come from a seeded generator (``AuditConfig.seed``, default the job seed) and an audit is
reproducible; DP noise inside training is drawn as in any job.

What is audited: the trained model. The party's preprocessing statistics and example count
are released without noise in every job; they are outside the accountant's epsilon and the
canaries are kept out of the former.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsilo.config import JobConfig
from fedsilo.errors import ConfigError
from fedsilo.privacy.one_run import OneRunAudit, audit_scores
from fedsilo.results import Result
from fedsilo.runtime.coordinator import RoundRecord
from fedsilo.runtime.party import LocalData
from fedsilo.runtime.seeds import derive_seed
from fedsilo.simulation import (
    BUILTIN_LABEL,
    SimulatedData,
    as_job,
    load_simulated_data,
    simulate_horizontal,
)

log = logging.getLogger(__name__)

#: delta of the lower bound when the job has no DP (and so no delta of its own)
DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class AuditConfig:
    """How to audit: which party holds the canaries, how many, and at what confidence."""

    party: str | None = None  # default: the first party in sorted order
    canaries: int = 200
    confidence: float = 0.95
    low_fpr: float = 0.01
    seed: int | None = None  # the auditor's coins; default: the job seed

    def __post_init__(self) -> None:
        if self.canaries < 20:
            raise ConfigError(
                f"the privacy audit needs at least 20 canaries, got {self.canaries}; with fewer "
                "no outcome can show a positive epsilon at a useful confidence"
            )
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0 < self.low_fpr < 1:
            raise ConfigError(f"low_fpr must be in (0, 1), got {self.low_fpr}")


@dataclass(frozen=True)
class Canaries:
    """The auditor's secret: the canary rows (wrong labels) and each one's coin."""

    party: str
    rows: LocalData  # all m canaries, in canary order
    included: np.ndarray  # bool (m,): the coin of each canary

    def included_rows(self) -> LocalData:
        return _subset(self.rows, np.flatnonzero(self.included))


def _subset(d: LocalData, idx: np.ndarray) -> LocalData:
    if d.table is not None:
        return LocalData(d.source, table=d.table.iloc[idx].reset_index(drop=True))
    assert d.images is not None and d.labels is not None
    return LocalData(d.source, images=d.images[idx], labels=d.labels[idx], classes=d.classes)


def _label_column(job: JobConfig) -> str:
    return BUILTIN_LABEL if job.data.dataset is not None else str(job.data.label)


def _flip(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Each label moved to a different class, uniformly among the others."""
    return (labels + rng.integers(1, num_classes, size=len(labels))) % num_classes


def plant_canaries(
    job: JobConfig, sim: SimulatedData, cfg: AuditConfig
) -> tuple[SimulatedData, Canaries]:
    """Take the canaries out of the audited party's rows, flip their labels, toss the coins.

    Returns the simulation's data with the party's remaining rows and its included canaries,
    and the auditor's secret (all canaries, all coins).
    """
    party = cfg.party if cfg.party is not None else sorted(sim.parties)[0]
    if party not in sim.parties:
        raise ConfigError(
            f"party {party!r} is not in job {job.name!r}; its parties are "
            f"{', '.join(sorted(sim.parties))}"
        )
    rows = sim.parties[party]
    m = cfg.canaries
    if m > rows.num_rows // 2:
        raise ConfigError(
            f"party {party!r} has {rows.num_rows} rows in {rows.source}; the audit takes its "
            f"canaries out of them and keeps at least half: use at most {rows.num_rows // 2} "
            "canaries, or audit a larger party"
        )
    rng = np.random.default_rng(derive_seed(job.seed if cfg.seed is None else cfg.seed, "audit"))
    chosen = np.sort(rng.choice(rows.num_rows, size=m, replace=False))
    rest = np.setdiff1d(np.arange(rows.num_rows), chosen)
    pool = _subset(rows, chosen)
    source = f"{rows.source} (privacy-audit canaries)"
    if pool.table is not None:
        column = _label_column(job)
        values = sorted(rows.table[column].dropna().unique(), key=str)  # type: ignore[index]
        if len(values) < 2:
            raise ConfigError(
                f"party {party!r} has a single label value in column {column!r} of "
                f"{rows.source}; label-flipped canaries need at least two"
            )
        index = {v: i for i, v in enumerate(values)}
        codes = np.array([index[v] for v in pool.table[column]])
        flipped = [values[i] for i in _flip(codes, len(values), rng)]
        pool = LocalData(source, table=pool.table.assign(**{column: flipped}))
    else:
        assert pool.labels is not None and pool.images is not None
        labels = _flip(pool.labels, len(pool.classes), rng)
        pool = LocalData(source, images=pool.images, labels=labels, classes=pool.classes)
    included = rng.random(m) < 0.5
    if included.all() or not included.any():
        raise ConfigError(f"all {m} coins fell on one side; use another audit seed")
    canaries = Canaries(party, pool, included)
    parties = {**sim.parties, party: _subset(rows, rest)}
    planted = SimulatedData(parties, sim.test, {party: canaries.included_rows()})
    return planted, canaries


def canary_scores(result: Result, canaries: Canaries) -> np.ndarray:
    """Log-probability of each canary's (flipped) label under the final global model."""
    rows = canaries.rows
    if rows.table is not None:
        plan = result.setup.plan
        assert plan is not None
        x, y = plan.transform(rows.table, party=canaries.party, source=rows.source)
    else:
        assert rows.images is not None and rows.labels is not None
        x, y = rows.images, rows.labels
    model = result.model().eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        logp = torch.log_softmax(logits.double(), dim=1)
    return logp[torch.arange(len(y)), torch.from_numpy(np.asarray(y, dtype=np.int64))].numpy()


def accountant_epsilon(result: Result, party: str) -> tuple[float, float | None]:
    """(epsilon, delta) the accountant reports for ``party``'s rows; (inf, None) without DP.

    Record-level DP: the party's own spend. Client-level DP protects the party's whole data,
    so it bounds any one row too: the job's epsilon.
    """
    privacy = result.history[-1].privacy if result.history else {}
    if privacy.get("level") == "record":
        spend = privacy.get("parties", {}).get(party, {})
        return float(spend.get("epsilon", math.inf)), float(privacy["delta"])
    if privacy.get("level") == "client":
        return float(privacy["epsilon"]), float(privacy["delta"])
    return math.inf, None


@dataclass(frozen=True)
class PrivacyAudit:
    """The audit's findings for one party (``to_json`` goes into metrics.json)."""

    party: str
    seed: int
    test: OneRunAudit
    accountant_epsilon: float  # inf without DP
    scores: np.ndarray
    included: np.ndarray

    @property
    def consistent(self) -> bool:
        """The empirical lower bound does not exceed the accountant's epsilon."""
        return self.test.epsilon_lower_bound <= self.accountant_epsilon

    def to_json(self) -> dict[str, Any]:
        eps = self.accountant_epsilon
        return {
            "party": self.party,
            "seed": self.seed,
            "method": "one-run (Steinke, Nasr & Jagielski 2023), label-flipped canaries",
            **self.test.to_json(),
            "accountant_epsilon": eps if math.isfinite(eps) else None,
            "consistent": self.consistent,
            "canary_scores": [float(s) for s in self.scores],
            "canary_included": [bool(i) for i in self.included],
        }


def run_privacy_audit(
    config: JobConfig | str | Path | Mapping[str, Any],
    audit: AuditConfig | None = None,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    audit_dir: Path | None = None,
) -> tuple[Result, PrivacyAudit]:
    """Plant canaries, train the job once, run the membership test.

    Returns the training result (its ``metrics.json`` and report carry the audit under
    ``privacy_audit``) and the audit itself.
    """
    job = as_job(config)
    cfg = audit or AuditConfig()
    sim, canaries = plant_canaries(job, load_simulated_data(job), cfg)
    log.info(
        "privacy audit: %d canaries at party %s, %d included",
        len(canaries.included),
        canaries.party,
        int(canaries.included.sum()),
    )
    result = simulate_horizontal(job, on_round=on_round, audit_dir=audit_dir, data=sim)
    scores = canary_scores(result, canaries)
    eps, delta = accountant_epsilon(result, canaries.party)
    test = audit_scores(
        scores,
        canaries.included,
        delta=DEFAULT_DELTA if delta is None else delta,
        confidence=cfg.confidence,
        low_fpr=cfg.low_fpr,
    )
    found = PrivacyAudit(
        canaries.party,
        job.seed if cfg.seed is None else cfg.seed,
        test,
        eps,
        scores,
        canaries.included,
    )
    if not found.consistent:
        log.warning(
            "privacy audit: empirical epsilon lower bound %.3f exceeds the accountant's %.3f "
            "for party %s",
            test.epsilon_lower_bound,
            eps,
            canaries.party,
        )
    return dataclasses.replace(result, privacy_audit=found.to_json()), found
