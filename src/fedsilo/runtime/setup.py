"""Before the first round: agree on a schema, a preprocessing plan and a model.

Three exchanges through the transport, all parties required:

1. ``describe``: each party reports its column names and types (or image shape and classes);
   the coordinator checks they agree and fails *before training* naming party and column.
2. ``stats``: each party sends summable statistics; the coordinator merges them into one
   :class:`~fedsilo.data.preprocess.PreprocessPlan` (means, standard deviations, category sets,
   imputation values, classes), so every party encodes its rows the same way.
3. ``setup``: each party receives the plan and the model spec, splits off its held-out rows
   and reports its example counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsilo.config import JobConfig
from fedsilo.data.preprocess import PreprocessPlan, merge_stats
from fedsilo.data.tabular import TableSchema, check_schemas
from fedsilo.errors import DataError, ErrorCode, SchemaError, error_for
from fedsilo.models import ModelSpec
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.record_spend import record_dp_proposal
from fedsilo.runtime.seeds import holdout_seed
from fedsilo.runtime.transport import Transport

COORDINATOR = "coordinator"


@dataclass(frozen=True)
class SetupResult:
    """What the coordinator knows after setup: never rows, only shapes, plan and counts."""

    parties: tuple[str, ...]
    kind: str  # "tabular" | "image"
    classes: tuple[str, ...]
    model_spec: ModelSpec
    plan: PreprocessPlan | None
    summary: dict[str, Any]  # per party: train/holdout examples and label counts


def _raise_for_failures(step: str, failures: dict[str, str], codes: dict[str, ErrorCode]) -> None:
    if not failures:
        return
    lines = [f"party '{p}': {why}" for p, why in sorted(failures.items())]
    text = f"setup step '{step}' failed before training:\n  " + "\n  ".join(lines)
    # Re-raise as the parties' own error (SchemaError, DataError...) when their codes agree.
    agreed = set(codes.values())
    raise error_for(agreed.pop(), text) if len(agreed) == 1 else DataError(text)


def _ask_all(
    transport: Transport, job: JobConfig, kind: TaskKind, bodies: dict[str, dict[str, Any]]
) -> dict[str, Message]:
    tasks = {p: Message(kind, job.name, 0, COORDINATOR, body) for p, body in bodies.items()}
    gathered = transport.exchange(tasks, timeout_s=job.selection.timeout_s)
    failures = dict(gathered.failures)
    codes = dict.fromkeys(failures, ErrorCode.BAD_REQUEST)
    for party, reply in gathered.replies.items():
        if reply.fault is not None:
            failures[party] = reply.fault.message
            codes[party] = reply.fault.code
    _raise_for_failures(kind.value, failures, codes)
    return gathered.replies


def prepare_parties(transport: Transport, job: JobConfig) -> SetupResult:
    parties = transport.party_names()
    if not parties:
        raise DataError("no parties are connected; nothing to train on")
    d = job.data
    describe_body = {
        "label": d.label or "label",
        "id": d.id,
        "columns": {k: v.value for k, v in d.columns.items()},
    }
    described = _ask_all(transport, job, TaskKind.DESCRIBE, {p: describe_body for p in parties})
    kinds = {p: str(r.body["kind"]) for p, r in described.items()}
    if len(set(kinds.values())) != 1:
        raise SchemaError(f"parties hold different kinds of data: {kinds}")
    kind = next(iter(kinds.values()))

    plan: PreprocessPlan | None = None
    if kind == "tabular":
        schemas = {p: TableSchema.from_json(r.body["schema"]) for p, r in described.items()}
        shared = check_schemas(schemas)
        stats_body = {"schema": shared.to_json()}
        stats = _ask_all(transport, job, TaskKind.STATS, {p: stats_body for p in parties})
        plan = merge_stats({p: r.body["stats"] for p, r in stats.items()}, shared, d.missing)
        classes = tuple(plan.classes)
        input_shape: tuple[int, ...] = (len(plan.feature_names),)
    else:
        shapes = {p: tuple(r.body["shape"]) for p, r in described.items()}
        class_sets = {p: tuple(r.body["classes"]) for p, r in described.items()}
        if len(set(shapes.values())) != 1 or len(set(class_sets.values())) != 1:
            raise SchemaError(f"parties' images disagree: shapes {shapes}, classes {class_sets}")
        classes = next(iter(class_sets.values()))
        input_shape = next(iter(shapes.values()))

    m = job.model
    spec = ModelSpec(m.name, input_shape, len(classes), tuple(m.hidden), dict(m.options))
    setup_bodies = {
        p: {
            "plan": plan.to_json() if plan is not None else None,
            "classes": list(classes),
            "model": spec.to_json(),
            "holdout_fraction": d.holdout_fraction,
            "seed": holdout_seed(job.seed, i),
            "record_dp": record_dp_proposal(job),
            "reproducible_noise": job.privacy.reproducible_noise,
        }
        for i, p in enumerate(parties)
    }
    ready = _ask_all(transport, job, TaskKind.SETUP, setup_bodies)
    summary = {
        p: {
            "train_examples": int(r.body["train_examples"]),
            "holdout_examples": int(r.body["holdout_examples"]),
            "label_counts": dict(zip(classes, r.body["label_counts"], strict=True)),
        }
        for p, r in sorted(ready.items())
    }
    return SetupResult(tuple(parties), kind, classes, spec, plan, summary)
