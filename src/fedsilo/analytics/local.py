"""A party's side of a query: DuckDB over its own CSV/Parquet file or DataFrame.

The rows are read with the declared types by :func:`fedsilo.data.typed.typed_view` (no type
guessing; malformed values, values outside the declared categories and, unless the column says
``missing = "skip"``, missing values are errors naming party, file, column and count).

:func:`local_statistics` runs one aggregate SQL statement built from a checked
:class:`~fedsilo.analytics.plan.QueryPlan` (identifiers quoted, filter re-validated, bin edges
and bounds are numbers from the plan) and returns a ``(groups, statistics)`` float64 array
over the full public group space, zero-filled. Rows whose group value is NULL (a skipped
missing value) take part in no group. Nothing else leaves: no row counts outside the
statistics, no data-dependent shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from fedsilo.analytics.plan import Block, QueryPlan
from fedsilo.data.typed import typed_view
from fedsilo.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartyTable:
    """Where a party's rows are: a CSV/Parquet path or an in-memory DataFrame."""

    source: str
    path: Path | None = None
    frame: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.frame is None):
            raise ValueError("PartyTable holds either a path or a frame")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _num(x: float) -> str:
    return repr(float(x))


def _clipped(plan: QueryPlan, col: str) -> str:
    """``clip(col) - midpoint``; NULL stays NULL (DuckDB's LEAST/GREATEST would skip it)."""
    spec = plan.columns[col]
    assert spec.lower is not None and spec.upper is not None
    v, lo, hi = f"CAST({_q(col)} AS DOUBLE)", _num(spec.lower), _num(spec.upper)
    return f"(CASE WHEN {v} < {lo} THEN {lo} WHEN {v} > {hi} THEN {hi} ELSE {v} END - {_num(spec.center)})"


def _bin_index(column: str, edges: tuple[float, ...]) -> str:
    """0-based bin of ``column`` clamped to [e0, ek]; bins are [e_i, e_i+1), the last closed."""
    v = f"CAST({_q(column)} AS DOUBLE)"
    whens = " ".join(f"WHEN {v} < {_num(e)} THEN {i}" for i, e in enumerate(edges[1:-1]))
    return f"(CASE WHEN {v} IS NULL THEN NULL {whens} ELSE {len(edges) - 2} END)"


def _block_sql(block: Block, ref: dict[str | Block, str]) -> list[str]:
    """Aggregates over the inner projection: ``ref`` maps a column name (its clipped value) or
    a histogram block (its bin index) to its alias; the two never share a key, whatever the
    column names."""
    k, cols = block.kind, block.columns
    if k == "count":
        return ["COUNT(*)"]
    if k == "n":
        return [f"COUNT({_q(cols[0])})"]
    if k == "s1":
        return [f"SUM({ref[cols[0]]})"]
    if k == "s2":
        return [f"SUM({ref[cols[0]]} * {ref[cols[0]]})"]
    if k == "hist":
        b = ref[block]
        return [f"COUNT_IF({b} = {i})" for i in range(block.size)]
    a, c = ref[cols[0]], ref[cols[1]]
    return [
        {
            "pn": f"COUNT({a} * {c})",
            "pa": f"SUM(CASE WHEN {c} IS NOT NULL THEN {a} END)",
            "pb": f"SUM(CASE WHEN {a} IS NOT NULL THEN {c} END)",
            "paa": f"SUM(CASE WHEN {c} IS NOT NULL THEN {a} * {a} END)",
            "pbb": f"SUM(CASE WHEN {a} IS NOT NULL THEN {c} * {c} END)",
            "pab": f"SUM({a} * {c})",
        }[k]
    ]


def statistics_sql(plan: QueryPlan, relation: str) -> str:
    """One statement: filter and project (group keys, clipped values, bin indices) once, then
    aggregate per group."""
    keys = [f"CAST({_q(g)} AS VARCHAR) AS _g{i}" for i, g in enumerate(plan.group_by)]
    ref: dict[str | Block, str] = {}
    project: list[str] = list(keys)
    for b in plan.blocks:
        for col in b.columns if b.kind != "hist" else ():
            if col not in ref:
                ref[col] = f"_c{len(ref)}"
                project.append(f"{_clipped(plan, col)} AS {ref[col]}")
        if b.kind == "hist" and b not in ref:
            ref[b] = f"_b{len(ref)}"
            project.append(f"{_bin_index(b.columns[0], b.bins)} AS {ref[b]}")
    plain = sorted({c for b in plan.blocks if b.kind == "n" for c in b.columns})
    project += [_q(c) for c in plain]
    conds = []
    if plan.where_sql is not None:
        conds.append(f"({plan.where_sql})")
    for g, cats in zip(plan.group_by, plan.categories, strict=True):
        listed = ", ".join("'" + str(c).replace("'", "''") + "'" for c in cats)
        conds.append(f"CAST({_q(g)} AS VARCHAR) IN ({listed})")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    inner = f"SELECT {', '.join(project) or '1 AS _one'} FROM {relation}{where}"
    stats = [s for b in plan.blocks for s in _block_sql(b, ref)]
    outer_keys = [f"_g{i}" for i in range(len(plan.group_by))]
    group = f" GROUP BY {', '.join(outer_keys)}" if outer_keys else ""
    select = ", ".join([*outer_keys, *(f"CAST({s} AS DOUBLE)" for s in stats)])
    return f"SELECT {select} FROM ({inner}){group}"


def _log_clipped(
    plan: QueryPlan, relation: str, con: duckdb.DuckDBPyConnection, *, party: str, source: str
) -> None:
    """Log, at the party only, how many of the summed values each bound clipped."""
    summed = sorted({c for b in plan.blocks if b.kind != "hist" for c in b.columns})
    if not summed:
        return
    where = f" WHERE {plan.where_sql}" if plan.where_sql is not None else ""
    parts = []
    for c in summed:
        spec = plan.columns[c]
        parts.append(f"COUNT_IF({_q(c)} < {_num(spec.lower or 0.0)})")
        parts.append(f"COUNT_IF({_q(c)} > {_num(spec.upper or 0.0)})")
    found = con.execute(f"SELECT {', '.join(parts)} FROM {relation}{where}").fetchone()
    assert found is not None
    for i, c in enumerate(summed):
        spec = plan.columns[c]
        log.info(
            "party %s (%s): column %r: %d value(s) clipped up to %g, %d down to %g",
            party,
            source,
            c,
            found[2 * i],
            spec.lower,
            found[2 * i + 1],
            spec.upper,
        )


def connect(threads: int = 1) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for a party (opening one costs tens of ms: agents keep theirs).

    One thread by default: DuckDB then adds in a fixed order, so the sums, and the answers,
    are the same bit for bit on every run.
    """
    return duckdb.connect(config={"threads": threads})


def local_statistics(
    plan: QueryPlan,
    table: PartyTable,
    *,
    party: str,
    con: duckdb.DuckDBPyConnection | None = None,
) -> np.ndarray:
    """The party's ``(groups, statistics)`` array for ``plan``, over the public group space."""
    own = con is None
    con = connect() if con is None else con
    try:
        declared = {c: spec.declared() for c, spec in plan.columns.items()}
        relation, _ = typed_view(
            con, declared, party=party, source=table.source, path=table.path, frame=table.frame
        )
        _log_clipped(plan, relation, con, party=party, source=table.source)
        try:
            rows = con.execute(statistics_sql(plan, relation)).fetchall()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(
                f"party '{party}' cannot run the query on {table.source}: {first}. Check that "
                f"the file has the declared columns {sorted(plan.columns)} with the declared types"
            ) from None
    finally:
        if own:
            con.close()
    index = {tuple(str(v) for v in g): i for i, g in enumerate(plan.groups)}
    out = np.zeros((len(index), plan.num_stats), dtype=np.float64)
    ng = len(plan.group_by)
    for row in rows:
        i = index.get(tuple(str(v) for v in row[:ng]))
        if i is None:  # cannot happen: the filter keeps declared categories only
            continue
        out[i] = [0.0 if v is None else float(v) for v in row[ng:]]
    return out
