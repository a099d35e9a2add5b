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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter

from fedsilo.config import JobConfig
from fedsilo.data.preprocess import PreprocessPlan, merge_stats
from fedsilo.data.tabular import TableSchema, check_schemas
from fedsilo.errors import DataError, ErrorCode, ProtocolError, SchemaError, error_for
from fedsilo.models import ModelSpec
from fedsilo.protocol.bodies import (
    Body,
    DeclaredBody,
    DescribeReply,
    DescribeTask,
    ImageDescription,
    LocalStats,
    NumberStats,
    RecordDPProposal,
    SetupReply,
    SetupTask,
    StatsReply,
    StatsTask,
    TabularDescription,
)
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import body_json
from fedsilo.runtime.record_spend import record_dp_proposal
from fedsilo.runtime.replies import reply_body
from fedsilo.runtime.seeds import holdout_seed
from fedsilo.runtime.transport import Transport

COORDINATOR = "coordinator"
DESCRIBE_REPLY: TypeAdapter[DescribeReply] = TypeAdapter(DescribeReply)
B = TypeVar("B")


@dataclass(frozen=True)
class SetupResult:
    """What the coordinator knows after setup: never rows, only shapes, plan and counts."""

    parties: tuple[str, ...]
    kind: str  # "tabular" | "image"
    classes: tuple[str, ...]
    model_spec: ModelSpec
    plan: PreprocessPlan | None
    summary: dict[str, Any]  # per party: train/holdout examples and label counts
    replies: Mapping[str, SetupReply] = field(default_factory=dict)  # what each party declared

    def declared(self, party: str) -> SetupReply:
        """What ``party`` declared at setup; a party that took no part in setup has nothing."""
        found = self.replies.get(party)
        if found is None:
            raise ProtocolError(f"party {party!r} took no part in setup; its replies are refused")
        return found


def _raise_for_failures(step: str, failures: dict[str, str], codes: dict[str, ErrorCode]) -> None:
    if not failures:
        return
    lines = [f"party '{p}': {why}" for p, why in sorted(failures.items())]
    text = f"setup step '{step}' failed before training:\n  " + "\n  ".join(lines)
    # Re-raise as the parties' own error (SchemaError, DataError...) when their codes agree.
    agreed = set(codes.values())
    raise error_for(agreed.pop(), text) if len(agreed) == 1 else DataError(text)


def _ask_all(
    transport: Transport,
    job: JobConfig,
    kind: TaskKind,
    bodies: Mapping[str, Body],
    reply: type[B] | TypeAdapter[B],
) -> dict[str, B]:
    """Every party's typed reply to ``kind``; any error or invalid reply fails setup."""
    tasks = {
        p: Message(kind, job.name, 0, COORDINATOR, body_json(body)) for p, body in bodies.items()
    }
    gathered = transport.exchange(tasks, timeout_s=job.selection.timeout_s)
    failures = dict(gathered.failures)
    codes = dict.fromkeys(failures, ErrorCode.BAD_REQUEST)
    typed: dict[str, B] = {}
    for party, msg in gathered.replies.items():
        if msg.fault is not None:
            failures[party] = msg.fault.message
            codes[party] = msg.fault.code
            continue
        try:
            typed[party] = reply_body(reply, msg, kind, 0)
        except ProtocolError as exc:
            failures[party], codes[party] = str(exc), exc.code
    _raise_for_failures(kind.value, failures, codes)
    return typed


def prepare_parties(transport: Transport, job: JobConfig) -> SetupResult:
    parties = transport.party_names()
    if not parties:
        raise DataError("no parties are connected; nothing to train on")
    d = job.data
    describe = DescribeTask(
        label=d.label or "label",
        id=d.id,
        columns={n: DeclaredBody(type=c.type, format=c.format) for n, c in d.columns.items()},
    )
    described = _ask_all(
        transport, job, TaskKind.DESCRIBE, dict.fromkeys(parties, describe), DESCRIBE_REPLY
    )
    kinds = {p: r.kind for p, r in described.items()}
    if len(set(kinds.values())) != 1:
        raise SchemaError(f"parties hold different kinds of data: {kinds}")
    kind = next(iter(kinds.values()))

    plan: PreprocessPlan | None = None
    if kind == "tabular":
        tables = {p: r for p, r in described.items() if isinstance(r, TabularDescription)}
        schemas = {
            p: TableSchema.from_json(r.table.model_dump(mode="json")) for p, r in tables.items()
        }
        shared = check_schemas(schemas)
        stats_task = StatsTask.model_validate({"schema": shared.to_json()})
        stats = _ask_all(
            transport, job, TaskKind.STATS, dict.fromkeys(parties, stats_task), StatsReply
        )
        for p, counted in stats.items():
            _check_rows(p, counted.stats, tables[p].rows)
        merged = {p: counted.stats.model_dump(mode="json") for p, counted in stats.items()}
        plan = merge_stats(merged, shared, d.missing)
        classes = tuple(plan.classes)
        input_shape: tuple[int, ...] = (len(plan.feature_names),)
    else:
        images = {p: r for p, r in described.items() if isinstance(r, ImageDescription)}
        shapes = {p: r.shape for p, r in images.items()}
        class_sets = {p: r.classes for p, r in images.items()}
        if len(set(shapes.values())) != 1 or len(set(class_sets.values())) != 1:
            raise SchemaError(f"parties' images disagree: shapes {shapes}, classes {class_sets}")
        classes = next(iter(class_sets.values()))
        input_shape = next(iter(shapes.values()))

    m = job.model
    spec = ModelSpec(m.name, input_shape, len(classes), tuple(m.hidden), dict(m.options))
    proposal = record_dp_proposal(job)
    setup_tasks = {
        p: SetupTask(
            plan=plan.to_json() if plan is not None else None,
            classes=classes,
            model=spec.to_json(),
            holdout_fraction=d.holdout_fraction,
            seed=holdout_seed(job.seed, i),
            record_dp=None if proposal is None else RecordDPProposal.model_validate(proposal),
            reproducible_noise=job.privacy.reproducible_noise,
        )
        for i, p in enumerate(parties)
    }
    ready = _ask_all(transport, job, TaskKind.SETUP, setup_tasks, SetupReply)
    for p, r in ready.items():
        _check_setup(p, r, classes, described[p].rows)
    summary = {
        p: {
            "train_examples": r.train_examples,
            "holdout_examples": r.holdout_examples,
            "label_counts": dict(zip(classes, r.label_counts, strict=True)),
        }
        for p, r in sorted(ready.items())
    }
    return SetupResult(tuple(parties), kind, classes, spec, plan, summary, dict(ready))


def _check_rows(party: str, stats: LocalStats, rows: int) -> None:
    """Statistics that count the rows the party described, no more, no fewer."""
    where = f"party {party!r} round 0: stats field"
    if stats.n_rows != rows:
        raise ProtocolError(f"{where} 'stats.n_rows' is {stats.n_rows}, it described {rows} rows")
    for name, col in stats.columns.items():
        present = col.count if isinstance(col, NumberStats) else sum(col.counts.values())
        if present + col.missing != rows:
            raise ProtocolError(
                f"{where} 'stats.columns.{name}' counts {present + col.missing} values in "
                f"{rows} rows"
            )
    if sum(stats.label_counts.values()) != rows:
        raise ProtocolError(f"{where} 'stats.label_counts' does not count {rows} rows")


def _check_setup(party: str, reply: SetupReply, classes: tuple[str, ...], rows: int) -> None:
    where = f"party {party!r} round 0: setup field"
    if len(reply.label_counts) != len(classes):
        raise ProtocolError(
            f"{where} 'label_counts' has {len(reply.label_counts)} entries for "
            f"{len(classes)} classes"
        )
    if sum(reply.label_counts) != reply.train_examples:
        raise ProtocolError(f"{where} 'label_counts' does not sum to 'train_examples'")
    if reply.holdout_examples >= rows:
        raise ProtocolError(
            f"{where} 'holdout_examples' is {reply.holdout_examples}, it described {rows} rows"
        )
