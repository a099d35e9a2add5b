"""The QUERY task and reply bodies, typed (:mod:`fedsilo.protocol.bodies` for the other kinds).

A party parses the coordinator's QUERY task with :func:`~fedsilo.protocol.bodies.parse_body`
before it reads a field (the plan, the public job it prices the query with, the SQL for its
ledger, the secure-aggregation step); the coordinator parses each party's reply the same way.
A refusal names party, round, kind and field, e.g.::

    ProtocolError: party 'p0' round 0: query field 'plan.blocks.0.bins.0' is invalid: ...

The statistics themselves travel as the array ``stats`` (checked for shape and dtype by the
coordinator); secure-aggregation steps keep their protocol fields beside ``query`` and
``step``, read by :mod:`fedsilo.privacy.secagg.wire`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from fedsilo.analytics.config import AnalyticsJob, ColumnSpec
from fedsilo.analytics.plan import Block, QueryPlan
from fedsilo.errors import ProtocolError
from fedsilo.protocol.bodies import Body, Count, NonNegative
from fedsilo.protocol.messages import Message, origin

Step = Literal["keys", "shares", "mask", "confirm", "unmask"]


class BlockBody(Body):
    kind: str
    columns: tuple[str, ...]
    bins: tuple[float, ...]


class PlanBody(Body):
    """:class:`~fedsilo.analytics.plan.QueryPlan` on the wire (its ``to_json``)."""

    table: str
    where: str | None
    group_by: tuple[str, ...]
    categories: tuple[tuple[str | int, ...], ...]
    blocks: tuple[BlockBody, ...]
    columns: dict[str, ColumnSpec]

    def plan(self) -> QueryPlan:
        return QueryPlan(
            table=self.table,
            where_sql=self.where,
            group_by=self.group_by,
            categories=self.categories,
            blocks=tuple(Block(b.kind, b.columns, b.bins) for b in self.blocks),
            columns=dict(self.columns),
        )


class SecaggStep(Body):
    """The ``secagg`` part of a QUERY task: which query, which step, and the step's protocol
    fields (kept as sent, parsed by :mod:`fedsilo.privacy.secagg.wire`)."""

    model_config = ConfigDict(extra="allow")

    query: str = Field(min_length=1)
    step: Step

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class QueryTask(Body):
    """A QUERY task: the plan, the public job and the SQL (a plain query or step ``keys``);
    only ``secagg`` for the later secure-aggregation steps."""

    plan: PlanBody | None = None
    job: AnalyticsJob | None = None
    sql: str = ""
    secagg: SecaggStep | None = None

    def query_plan(self, msg: Message, where: str) -> QueryPlan:
        """The plan, which a plain query and step ``keys`` must carry."""
        if self.plan is None:
            raise _missing(msg, where, "plan")
        return self.plan.plan()

    def public_job(self, msg: Message, where: str) -> AnalyticsJob:
        """The public job (privacy settings to price, schema), which the plan comes with."""
        if self.job is None:
            raise _missing(msg, where, "job")
        return self.job


def _missing(msg: Message, where: str, field: str) -> ProtocolError:
    return ProtocolError(
        f"{origin(msg, where)} field '{field}' is missing; upgrade the coordinator"
    )


class SpendReport(Body):
    """A party's ``privacy`` reply body: its total after the query, budget, delta, cost."""

    spent: NonNegative
    budget: float | None = Field(default=None, gt=0)
    delta: float = Field(gt=0, lt=1)
    cost: NonNegative | None = None


class QueryReply(Body):
    """A plain QUERY reply: the statistics' shape (the array ``stats``) and the spend."""

    groups: Count
    statistics: Count
    privacy: SpendReport | None = None


class Spent(Body):
    """The ``privacy`` field of any QUERY reply (a secure step's other fields are its own)."""

    model_config = ConfigDict(extra="ignore")

    privacy: SpendReport | None = None
