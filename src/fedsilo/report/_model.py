"""A typed, forgiving view of a job's ``metrics.json`` for the report.

The report has to cope with partial input (no baseline, a metric absent, a party missing
from a round, a job stopped before ``final``), so everything is read through
:func:`load`, which never raises on a missing or oddly-typed optional part: it substitutes
an empty value and the page says "not available" instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

METRIC_ORDER = ("loss", "accuracy", "precision", "recall", "f1", "auc")
METRIC_LABELS = {
    "loss": "Loss",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "auc": "AUC",
}
LOWER_IS_BETTER = frozenset({"loss"})

Metrics = dict[str, float | None]
"""Metric name → value; ``None`` for a metric that is present but undefined (NaN)."""


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def as_number(value: Any) -> float | None:
    """A finite float, or ``None`` for anything else (missing, null, NaN, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def as_count(value: Any) -> int | None:
    x = as_number(value)
    return int(x) if x is not None and x == int(x) else None


def as_metrics(value: Any) -> Metrics:
    return {str(k): as_number(v) for k, v in as_mapping(value).items()}


def ordered_metrics(sources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names with a value in any source: the known ones in canonical order, then the others.

    A metric that is everywhere ``None`` (e.g. AUC of a multiclass job, stored as null) counts
    as absent, so it gets no column, panel or headline.
    """
    seen: dict[str, None] = {}
    for source in sources:
        for key, value in source.items():
            if value is not None:
                seen.setdefault(str(key), None)
    known = [m for m in METRIC_ORDER if m in seen]
    return known + [m for m in seen if m not in METRIC_ORDER]


@dataclass(frozen=True)
class RoundView:
    number: int
    duration_s: float | None
    participants: list[str]
    failures: dict[str, str]
    global_metrics: Metrics
    parties: dict[str, Metrics]
    train_loss: float | None
    attempts: int | None


@dataclass(frozen=True)
class PartyData:
    train_examples: int | None
    holdout_examples: int | None
    label_counts: dict[str, int | None]


@dataclass(frozen=True)
class Report:
    job_name: str
    version: str | None
    seed: Any
    rounds_configured: int | None
    wall_time_s: float | None
    config: Any
    dataset: str | None
    kind: str | None
    features: int | None
    classes: list[str]
    test_examples: int | None
    party_data: dict[str, PartyData]
    rounds: list[RoundView]
    final_global: Metrics
    final_parties: dict[str, Metrics]
    final_from_last_round: bool
    baseline: Metrics | None
    parties: list[str] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        sources: list[Mapping[str, Any]] = [self.final_global, *self.final_parties.values()]
        if self.baseline is not None:
            sources.append(self.baseline)
        for r in self.rounds:
            sources.append(r.global_metrics)
            sources.extend(r.parties.values())
        return ordered_metrics(sources)

    def round_metric_names(self) -> list[str]:
        return ordered_metrics(r.global_metrics for r in self.rounds)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _round(index: int, raw: Any) -> RoundView:
    r = as_mapping(raw)
    number = as_count(r.get("round"))
    attempts = as_count(r.get("attempts"))
    return RoundView(
        number=number if number is not None else index + 1,
        duration_s=as_number(r.get("duration_s")),
        participants=[str(p) for p in as_list(r.get("participants"))],
        failures={str(p): str(why) for p, why in as_mapping(r.get("failures")).items()},
        global_metrics=as_metrics(r.get("global")),
        parties={str(p): as_metrics(m) for p, m in as_mapping(r.get("parties")).items()},
        train_loss=as_number(r.get("train_loss")),
        attempts=attempts,
    )


def _party_data(raw: Any) -> PartyData:
    p = as_mapping(raw)
    return PartyData(
        train_examples=as_count(p.get("train_examples")),
        holdout_examples=as_count(p.get("holdout_examples")),
        label_counts={str(k): as_count(v) for k, v in as_mapping(p.get("label_counts")).items()},
    )


def load(metrics: Mapping[str, Any]) -> Report:
    """Normalise a metrics dict (see :mod:`fedsilo.results`) into a :class:`Report`."""
    job = as_mapping(metrics.get("job"))
    data = as_mapping(metrics.get("data"))
    rounds = [_round(i, r) for i, r in enumerate(as_list(metrics.get("history")))]
    party_data = {str(p): _party_data(v) for p, v in as_mapping(data.get("parties")).items()}

    final = metrics.get("final")
    from_last = not isinstance(final, Mapping) and bool(rounds)
    if from_last:
        final_global = dict(rounds[-1].global_metrics)
        final_parties = {p: dict(m) for p, m in rounds[-1].parties.items()}
    else:
        final_map = as_mapping(final)
        final_global = as_metrics(final_map.get("global"))
        final_parties = {
            str(p): as_metrics(m) for p, m in as_mapping(final_map.get("parties")).items()
        }
    baseline_raw = metrics.get("baseline")
    baseline = as_metrics(baseline_raw) if isinstance(baseline_raw, Mapping) else None

    # Parties in a stable order: the data summary first, then anyone seen only in results.
    order: dict[str, None] = dict.fromkeys(party_data)
    order.update(dict.fromkeys(final_parties))
    for r in rounds:
        order.update(dict.fromkeys(r.participants))
        order.update(dict.fromkeys(r.parties))
        order.update(dict.fromkeys(r.failures))

    classes = [str(c) for c in as_list(data.get("classes"))]
    for info in party_data.values():
        classes.extend(c for c in info.label_counts if c not in classes)

    name = job.get("name")
    return Report(
        job_name=str(name) if name not in (None, "") else "fedsilo job",
        version=_text(metrics.get("fedsilo_version")),
        seed=job.get("seed"),
        rounds_configured=as_count(job.get("rounds")),
        wall_time_s=as_number(metrics.get("wall_time_s")),
        config=job.get("config"),
        dataset=_text(data.get("dataset")),
        kind=_text(data.get("kind")),
        features=as_count(data.get("features")),
        classes=classes,
        test_examples=as_count(data.get("test_examples")),
        party_data=party_data,
        rounds=rounds,
        final_global=final_global,
        final_parties=final_parties,
        final_from_last_round=from_last,
        baseline=baseline,
        parties=list(order),
    )
