"""From a validated query to the sufficient statistics every party computes.

The statistics come in *blocks*; one row (the unit of privacy: adding or removing one row is a
neighbouring dataset) contributes to every block of its group only, and to each block at most
``sensitivity`` in L1 and L2 norm:

=============  ===========================================  =======================
block          per group                                    sensitivity
=============  ===========================================  =======================
``count``      rows                                         1
``n:c``        rows with ``c`` not NULL                     1
``s1:c``       sum of ``clip(c) - m``                       ``h``
``s2:c``       sum of ``(clip(c) - m)^2``                   ``h^2``
``p*:a:b``     the same six sums over rows with a, b set    1, h_a, h_b, h_a^2, h_b^2, h_a h_b
``hist:c:i``   counts per public bin (k numbers)            1 (a row is in one bin)
=============  ===========================================  =======================

``clip`` clips to the declared ``[lower, upper]``, ``m`` is its midpoint and ``h`` its half
width: centering at the public midpoint halves the sensitivity of the sums and keeps the
variance formulas free of cancellation. The group space is every combination of the GROUP BY
columns' public categories, zero-filled, so the shape of a reply reveals nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from fedsilo.analytics.config import AnalyticsJob, ColumnKind, ColumnSpec
from fedsilo.analytics.sql import Agg, Aggregate, Query, filter_columns, parse_filter
from fedsilo.errors import UnsupportedError

PAIR_PARTS = ("pn", "pa", "pb", "paa", "pbb", "pab")


@dataclass(frozen=True)
class Block:
    """One statistic block: ``kind`` (count, n, s1, s2, a pair part, hist), its columns."""

    kind: str
    columns: tuple[str, ...] = ()
    bins: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        edges = ",".join(repr(b) for b in self.bins)
        return ":".join((self.kind, *self.columns)) + (f"[{edges}]" if self.bins else "")

    @property
    def size(self) -> int:
        return len(self.bins) - 1 if self.kind == "hist" else 1

    def sensitivity(self, columns: dict[str, ColumnSpec]) -> float:
        h = [columns[c].half_range for c in self.columns]
        return {
            "count": 1.0,
            "n": 1.0,
            "hist": 1.0,
            "pn": 1.0,
            "s1": h[0] if h else 0.0,
            "s2": h[0] ** 2 if h else 0.0,
            "pa": h[0] if h else 0.0,
            "pb": h[-1] if h else 0.0,
            "paa": h[0] ** 2 if h else 0.0,
            "pbb": h[-1] ** 2 if h else 0.0,
            "pab": h[0] * h[-1] if h else 0.0,
        }[self.kind]


def blocks_for(agg: Aggregate) -> list[Block]:
    cols = agg.columns
    if agg.func is Agg.COUNT:
        return [Block("count")] if not cols else [Block("n", cols)]
    if agg.func is Agg.SUM or agg.func is Agg.AVG:
        return [Block("n", cols), Block("s1", cols)]
    if agg.func in (Agg.VAR_SAMP, Agg.VAR_POP, Agg.STDDEV_SAMP, Agg.STDDEV_POP):
        return [Block("n", cols), Block("s1", cols), Block("s2", cols)]
    if agg.func in (Agg.CORR, Agg.COVAR_SAMP, Agg.COVAR_POP):
        parts = PAIR_PARTS if agg.func is Agg.CORR else ("pn", "pa", "pb", "pab")
        return [Block(p, cols) for p in parts]
    return [Block("hist", cols, agg.bins)]


@dataclass(frozen=True)
class QueryPlan:
    """What each party computes: the filter, the public group space, the statistic blocks."""

    table: str
    where_sql: str | None
    group_by: tuple[str, ...]
    categories: tuple[tuple[str | int, ...], ...]  # per group column, public values
    blocks: tuple[Block, ...]
    columns: dict[str, ColumnSpec]  # the public schema of the columns the plan uses

    @property
    def groups(self) -> list[tuple[str | int, ...]]:
        return list(itertools.product(*self.categories))

    @property
    def num_stats(self) -> int:
        return sum(b.size for b in self.blocks)

    def offset(self, block: Block) -> slice:
        start = 0
        for b in self.blocks:
            if b == block:
                return slice(start, start + b.size)
            start += b.size
        raise KeyError(block.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "where": self.where_sql,
            "group_by": list(self.group_by),
            "categories": [list(c) for c in self.categories],
            "blocks": [
                {"kind": b.kind, "columns": list(b.columns), "bins": list(b.bins)}
                for b in self.blocks
            ],
            "columns": {k: v.model_dump(mode="json") for k, v in self.columns.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueryPlan:
        columns = {str(k): ColumnSpec.model_validate(v) for k, v in raw["columns"].items()}
        return cls(
            table=str(raw["table"]),
            where_sql=None if raw["where"] is None else str(raw["where"]),
            group_by=tuple(str(g) for g in raw["group_by"]),
            categories=tuple(tuple(c) for c in raw["categories"]),
            blocks=tuple(
                Block(str(b["kind"]), tuple(map(str, b["columns"])), tuple(map(float, b["bins"])))
                for b in raw["blocks"]
            ),
            columns=columns,
        )

    def check_against(self, job: AnalyticsJob) -> QueryPlan:
        """A party's check that a received plan only touches its public schema, as declared.

        Returns the plan to run: the same, with the filter as the party re-rendered it from
        the checked tree (every identifier quoted), never the received text."""
        if self.table != job.table:
            raise UnsupportedError(f"plan names table {self.table!r}, not {job.table!r}")
        for name, spec in self.columns.items():
            if job.columns.get(name) != spec:
                raise UnsupportedError(f"plan's column {name!r} differs from the job schema")
        for g, cats in zip(self.group_by, self.categories, strict=True):
            declared = job.columns.get(g)
            if (
                declared is None
                or declared.type is not ColumnKind.CATEGORY
                or list(cats) != declared.group_values
            ):
                raise UnsupportedError(f"plan groups by {g!r} with undeclared categories")
        for b in self.blocks:
            if b.kind not in ("count", "n", "s1", "s2", "hist", *PAIR_PARTS):
                raise UnsupportedError(f"plan has an unknown statistic {b.kind!r}")
            for c in b.columns:
                if c not in self.columns:
                    raise UnsupportedError(f"plan uses undeclared column {c!r}")
        if self.where_sql is None:
            return self
        return dataclasses.replace(self, where_sql=parse_filter(self.where_sql, job.columns))


def make_plan(query: Query, job: AnalyticsJob) -> QueryPlan:
    blocks: list[Block] = [Block("count")]  # always: suppression uses the noisy row count
    for agg in query.aggregates:
        for b in blocks_for(agg):
            if b not in blocks:
                blocks.append(b)
    used = set(query.group_by) | {c for b in blocks for c in b.columns}
    if query.where_sql is not None:  # the filter's columns are read with their types too
        used |= filter_columns(query.where_sql)
    return QueryPlan(
        table=query.table,
        where_sql=query.where_sql,
        group_by=query.group_by,
        categories=tuple(tuple(job.columns[g].group_values) for g in query.group_by),
        blocks=tuple(blocks),
        columns={c: job.columns[c] for c in sorted(used)},
    )
