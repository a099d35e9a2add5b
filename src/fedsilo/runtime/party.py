"""The party agent: an organization's side of every task.

A :class:`PartyAgent` sits next to the organization's rows and answers tasks. What leaves it:
the schema (column names and types), summable statistics for shared preprocessing (counts,
sums, sums of squares, category values and counts, label counts), the trained parameters and
evaluation metrics. Raw rows never leave.

The agent is a route table (:attr:`PartyAgent.routes`) served by
:func:`fedsilo.protocol.serve.serve`: :meth:`PartyAgent.handle` never raises to its caller;
every failure, a bad task or its own data problem, becomes an error reply with an error code
and a message that names the party, so a coordinator, or a transport, sees a reason instead of
a crash. Its record-level DP goes through the party's
:class:`~fedsilo.privacy.guard.PrivacyGuard` (budget, one ledger), which also seals every reply
(``on_reply``): the reply is appended to its audit log and leaves with the party's signed
anchor of that log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from torch import nn

from fedsilo.data.preprocess import PreprocessPlan, local_stats, read_typed
from fedsilo.data.tabular import ColumnSchema, TableSchema
from fedsilo.data.typed import infer_schema
from fedsilo.errors import DataError, NotReadyError, ProtocolError, UnsupportedError
from fedsilo.models import ModelSpec, Params, build_model, check_params, get_params, set_params
from fedsilo.privacy.dp_sgd import train_local_dp
from fedsilo.privacy.guard import PrivacyGuard
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.bodies import (
    DescribeTask,
    EvaluateReply,
    EvaluateTask,
    FitReply,
    FitTask,
    ImageDescription,
    SetupReply,
    SetupTask,
    StatsReply,
    StatsTask,
    TabularDescription,
    parse_body,
)
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply, Route, serve
from fedsilo.runtime.private_party import PrivateParty
from fedsilo.training import (
    EvalStats,
    LocalTrainConfig,
    Trainer,
    classification_metrics,
    predict_proba,
    train_local,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class LocalData:
    """A party's raw rows, as they sit at the organization.

    Tabular data is a DataFrame (features, label, optional id column) that goes through the
    shared schema and preprocessing plan. Image data is an array ``(n, C, H, W)`` in [0, 1]
    with integer labels indexing ``classes``.
    """

    source: str
    table: pd.DataFrame | None = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.table is None) == (self.images is None):
            raise ValueError("LocalData holds either a table or images")
        if self.images is not None and (
            self.labels is None or len(self.labels) != len(self.images)
        ):
            raise ValueError("image data needs one label per image")

    @property
    def num_rows(self) -> int:
        return len(self.table) if self.table is not None else len(self.images)  # type: ignore[arg-type]


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, holdout): a seeded shuffle, at least one row in each."""
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = min(max(1, round(n * fraction)), n - 1)
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


TRAINING_KINDS = frozenset(
    {
        TaskKind.DESCRIBE,
        TaskKind.STATS,
        TaskKind.SETUP,
        TaskKind.FIT,
        TaskKind.EVALUATE,
        TaskKind.SECAGG_KEYS,
        TaskKind.SECAGG_SHARES,
        TaskKind.SECAGG_CONFIRM,
        TaskKind.SECAGG_UNMASK,
    }
)


class PartyAgent:
    """Answers the coordinator's tasks for one organization."""

    def __init__(
        self,
        name: str,
        data: LocalData,
        guard: PrivacyGuard | None = None,
        *,
        identity: Identity | None = None,
        canaries: LocalData | None = None,
        trainer: Trainer = train_local,
    ) -> None:
        self.name = name
        self._trainer = trainer  # train_local, or a simulation's BatchedTrainer
        self._data = data
        # Rows that always train and are never held out nor summarized: the privacy audit's
        # canaries (fedsilo.privacy_audit). None in every ordinary job.
        if canaries is not None and (canaries.table is None) != (data.table is None):
            raise ValueError("canaries must be rows of the same kind (table or images) as data")
        self._canaries = canaries
        # Record-level DP, the party's own budget, ledger and audit log (fedsilo.privacy.guard).
        self._guard = guard if guard is not None else PrivacyGuard(name)
        self._plan: PreprocessPlan | None = None
        self._train: tuple[np.ndarray, np.ndarray] | None = None
        self._holdout: tuple[np.ndarray, np.ndarray] | None = None
        # Its table read with the agreed schema: statistics and setup read it once, not twice.
        self._typed: tuple[TableSchema, pd.DataFrame] | None = None
        # Built once at setup; every fit/evaluate task loads its weights (strict, all entries).
        self._model: nn.Module | None = None
        self._template: Params | None = None
        # Secure aggregation (signed with `identity`, checked against its roster) and client DP.
        self._private = PrivateParty(name, identity, self._guard.settings.client_dp)
        self.routes: dict[TaskKind, Route] = {
            TaskKind.DESCRIBE: lambda task: (self._describe(self._task(DescribeTask, task)), {}),
            TaskKind.STATS: lambda task: (self._stats(self._task(StatsTask, task)), {}),
            TaskKind.SETUP: lambda task: (
                self._setup(self._task(SetupTask, task), task.job_id),
                {},
            ),
            TaskKind.FIT: self._fit_task,
            TaskKind.EVALUATE: lambda task: (self._evaluate(task), {}),
            **self._private.routes,
        }
        self._serve = serve(name, self.routes, on_reply=self._guard.seal)

    def handle(self, data: bytes) -> bytes:
        """Answer one encoded task; never raises (see :func:`~fedsilo.protocol.serve.serve`)."""
        return self._serve(data)

    # -- tasks ------------------------------------------------------------------------------
    def _task(self, schema: type[T], task: Message) -> T:
        return parse_body(schema, task, where=f"party {self.name!r}")

    def _fit_task(self, task: Message) -> Reply:
        body = self._task(FitTask, task)
        if body.private is not None:  # secure aggregation and/or client DP
            noise = self._guard.noise_source(body.seed, "client-dp")
            return self._private.fit(task, body, lambda: self._fit(task, body), noise)
        return self._fit(task, body)

    def _describe(self, body: DescribeTask) -> TabularDescription | ImageDescription:
        d = self._data
        if d.table is None:
            assert d.images is not None
            return ImageDescription(
                kind="image", shape=d.images.shape[1:], rows=d.num_rows, classes=d.classes
            )
        schema = infer_schema(
            d.table,
            label=body.label,
            id_column=body.id,
            declared={n: ColumnSchema(n, c.type, c.format) for n, c in body.columns.items()},
            party=self.name,
            source=d.source,
        )
        return TabularDescription.model_validate(
            {"kind": "tabular", "schema": schema.to_json(), "rows": d.num_rows}
        )

    def _stats(self, body: StatsTask) -> StatsReply:
        d = self._data
        if d.table is None:
            raise UnsupportedError(
                f"party '{self.name}' holds images: it has no column statistics to send"
            )
        shared = TableSchema.from_json(body.table.model_dump(mode="json"))
        typed = self._typed_table(d.table, shared, d.source)
        stats = local_stats(typed, shared, party=self.name, source=d.source, typed=True)
        return StatsReply.model_validate({"stats": stats})

    def _typed_table(self, table: pd.DataFrame, schema: TableSchema, source: str) -> pd.DataFrame:
        """``table`` read with ``schema``'s types, once per schema (each read is a DuckDB
        pass over the rows: ~30-60 ms for a small table, whatever its size)."""
        if self._typed is None or self._typed[0] != schema:
            self._typed = (schema, read_typed(table, schema, party=self.name, source=source))
        return self._typed[1]

    def _rows(self, d: LocalData, body: SetupTask) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs and class indices of ``d`` under the job's plan (tables) or classes."""
        if d.table is not None:
            assert self._plan is not None
            typed = self._typed_table(d.table, self._plan.schema, d.source)
            self._typed = None  # setup is the last step that reads the table
            return self._plan.transform(typed, party=self.name, source=d.source, typed=True)
        assert d.images is not None and d.labels is not None
        if d.classes != body.classes:
            raise DataError(
                f"party '{self.name}' has classes {list(d.classes)} in {d.source}, the job has "
                f"{list(body.classes)}"
            )
        return d.images, d.labels

    def _setup(self, body: SetupTask, job_id: str) -> SetupReply:
        d = self._data
        if d.table is not None and body.plan is None:
            raise ProtocolError(f"party '{self.name}' holds a table: setup needs a plan")
        self._plan = PreprocessPlan.from_json(body.plan) if body.plan is not None else None
        features, labels = self._rows(d, body)
        if len(labels) < 2:
            raise DataError(
                f"party '{self.name}' has {len(labels)} usable row(s) in {d.source}; at least "
                "2 are needed (one to train on, one to evaluate on)"
            )
        train_idx, holdout_idx = split_holdout(len(labels), body.holdout_fraction, body.seed)
        train_x, train_y = features[train_idx], labels[train_idx]
        if self._canaries is not None:  # after the split: canaries never land in the holdout
            canary_x, canary_y = self._rows(self._canaries, body)
            train_x = np.concatenate([train_x, canary_x.astype(train_x.dtype)])
            train_y = np.concatenate([train_y, canary_y.astype(train_y.dtype)])
        self._train = (train_x, train_y)
        self._holdout = (features[holdout_idx], labels[holdout_idx])
        spec = ModelSpec.from_json(body.model)
        self._model = build_model(spec, seed=0)
        self._template = get_params(self._model)
        num_classes = spec.num_classes
        counts = np.bincount(train_y, minlength=num_classes)
        proposal = None if body.record_dp is None else body.record_dp.model_dump(mode="json")
        record_dp = self._guard.configure(
            proposal,
            len(train_y),
            job=job_id,
            reproducible_noise=body.reproducible_noise,
        )
        return SetupReply.model_validate(
            {
                "train_examples": len(train_y),
                "holdout_examples": len(holdout_idx),
                "label_counts": [int(c) for c in counts],
                "record_dp": record_dp,
            }
        )

    def _model_from(self, task: Message) -> nn.Module:
        if self._model is None or self._template is None or self._train is None:
            raise NotReadyError(
                f"party '{self.name}' got a {task.kind.value} task before setup; the coordinator "
                "must send setup first"
            )
        # every task reaches a route through Message.decode (serve), which refused NaN/inf
        check_params(task.arrays, self._template, finite=False)
        set_params(self._model, task.arrays)
        return self._model

    def _fit(self, task: Message, body: FitTask) -> tuple[FitReply, Params]:
        model = self._model_from(task)
        cfg = LocalTrainConfig(**body.training.model_dump())
        assert self._train is not None
        dp = self._guard.before_fit(task.round, cfg)  # refuses a round over the budget
        if dp is None:
            result = self._trainer(model, *self._train, cfg, seed=body.seed)
        else:
            noise = self._guard.noise_source(body.seed, "dp-sgd")
            result = train_local_dp(model, *self._train, cfg, dp, noise=noise)
        privacy = None if dp is None else self._guard.after_fit(cfg)
        reply = FitReply.model_validate(
            {
                "num_examples": result.num_examples,
                "train_loss": result.mean_loss,
                "privacy": privacy,
            }
        )
        # a batched trainer hands over the trained parameters; train_local trained the model
        return reply, get_params(model) if result.params is None else result.params

    def _evaluate(self, task: Message) -> EvaluateReply:
        self._task(EvaluateTask, task)
        model = self._model_from(task)
        assert self._holdout is not None
        features, labels = self._holdout
        proba = predict_proba(model, features)
        stats = EvalStats.from_predictions(labels, proba)
        return EvaluateReply.model_validate(
            {
                "num_examples": len(labels),
                "metrics": classification_metrics(labels, proba),
                "stats": stats.to_json(),
            }
        )
