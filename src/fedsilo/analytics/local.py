"""A party's side of a query: DuckDB over its own CSV/Parquet file or DataFrame.

:func:`local_statistics` runs one aggregate SQL statement built from a checked
:class:`~fedsilo.analytics.plan.QueryPlan` (identifiers quoted, filter re-validated, bin edges
and bounds are numbers from the plan) and returns a ``(groups, statistics)`` float64 array
over the full public group space, zero-filled. Rows whose group value is NULL or not a
declared category take part in no group. Nothing else leaves: no row counts outside the
statistics, no data-dependent shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from fedsilo.analytics.plan import Block, QueryPlan
from fedsilo.errors import DataError


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


def _block_sql(plan: QueryPlan, block: Block) -> list[str]:
    k, cols = block.kind, block.columns
    if k == "count":
        return ["COUNT(*)"]
    if k == "n":
        return [f"COUNT({_q(cols[0])})"]
    if k == "s1":
        return [f"SUM({_clipped(plan, cols[0])})"]
    if k == "s2":
        x = _clipped(plan, cols[0])
        return [f"SUM({x} * {x})"]
    if k == "hist":
        e = block.bins
        v = f"LEAST(GREATEST(CAST({_q(cols[0])} AS DOUBLE), {_num(e[0])}), {_num(e[-1])})"
        out = []
        for i in range(len(e) - 1):
            conds = [f"{_q(cols[0])} IS NOT NULL"]
            if i > 0:
                conds.append(f"{v} >= {_num(e[i])}")
            if i < len(e) - 2:
                conds.append(f"{v} < {_num(e[i + 1])}")
            out.append(f"COUNT_IF({' AND '.join(conds)})")
        return out
    a, b = cols
    both = f"{_q(a)} IS NOT NULL AND {_q(b)} IS NOT NULL"
    xa, xb = _clipped(plan, a), _clipped(plan, b)
    term = {
        "pn": "1.0",
        "pa": xa,
        "pb": xb,
        "paa": f"{xa} * {xa}",
        "pbb": f"{xb} * {xb}",
        "pab": f"{xa} * {xb}",
    }[k]
    return [f"SUM(CASE WHEN {both} THEN {term} END)"]


def statistics_sql(plan: QueryPlan, relation: str) -> str:
    keys = [f"CAST({_q(g)} AS VARCHAR)" for g in plan.group_by]
    stats = [s for b in plan.blocks for s in _block_sql(plan, b)]
    conds = []
    if plan.where_sql is not None:
        conds.append(f"({plan.where_sql})")
    for g, key, cats in zip(plan.group_by, keys, plan.categories, strict=True):
        listed = ", ".join("'" + str(c).replace("'", "''") + "'" for c in cats)
        conds.append(f"{_q(g)} IS NOT NULL AND {key} IN ({listed})")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    select = ", ".join([*keys, *(f"CAST({s} AS DOUBLE)" for s in stats)])
    return f"SELECT {select} FROM {relation}{where}{group}"


def local_statistics(
    plan: QueryPlan, table: PartyTable, *, party: str, threads: int = 1
) -> np.ndarray:
    """The party's ``(groups, statistics)`` array for ``plan``, over the public group space."""
    con = duckdb.connect(config={"threads": threads})
    try:
        if table.frame is not None:
            con.register("_party_rows", table.frame)
            relation = "_party_rows"
        else:
            assert table.path is not None
            if not table.path.exists():
                raise DataError(f"party '{party}': data file {table.path} does not exist")
            fn = "read_parquet" if table.path.suffix.lower() in (".parquet", ".pq") else "read_csv"
            relation = f"{fn}('{str(table.path).replace(chr(39), chr(39) * 2)}')"
        try:
            rows = con.execute(statistics_sql(plan, relation)).fetchall()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(
                f"party '{party}' cannot run the query on {table.source}: {first}. Check that "
                f"the file has the declared columns {sorted(plan.columns)} with the declared types"
            ) from None
    finally:
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
