"""Without DP, every aggregate equals DuckDB on the pooled (clipped) rows.

COUNT, SUM, AVG, VAR*, STDDEV*, COVAR*, CORR and HISTOGRAM match to 1e-9 relative (with an
absolute floor scaled by the clipping range, for answers near 0). MIN, MAX and QUANTILE are
histogram-based by design: the answer lies in the bin that holds the pooled answer.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from fedsilo.analytics.run import run_query

from .conftest import REGIONS, make_job, transport_for

EDGES = [0.0, 20.0, 45.0, 50.0, 80.0, 100.0]
BINS = "BINS=[0, 20, 45, 50, 80, 100]"
AGGS = (
    "COUNT(*) AS n, COUNT({a}) AS n_a, SUM({a}) AS s, AVG({a}) AS mean, VAR_SAMP({a}) AS vs, "
    "VAR_POP({a}) AS vp, STDDEV_SAMP({a}) AS sds, STDDEV_POP({a}) AS sdp, "
    "COVAR_SAMP({a}, {b}) AS cs, COVAR_POP({a}, {b}) AS cp, CORR({a}, {b}) AS corr"
)
WHERES = [
    None,
    "year = 2025",
    "amount > 20 AND region IN ('north', 'south')",
    "score BETWEEN 10 AND 60 OR year <> 2024",
    "NOT (amount < 50) AND amount IS NOT NULL",
]
GROUPS = [(), ("region",), ("year",), ("region", "year")]
SCALE = {"n": 1, "n_a": 1, "s": 100, "mean": 100, "vs": 1e4, "vp": 1e4, "sds": 100, "sdp": 100}

value = st.integers(-80, 480).map(lambda k: k / 4)  # [-20, 120]: some values get clipped
row = st.tuples(
    st.sampled_from(REGIONS),  # an undeclared value is an error (test_reader_matrix.py)
    st.sampled_from([2024, 2025]),
    st.one_of(st.none(), value),
    value,
)


def frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["region", "year", "amount", "score"])
    return df.astype({"region": "object", "year": "int64", "amount": "float64", "score": "float64"})


def pooled(frames: list[pd.DataFrame], where: str | None, group: tuple[str, ...]) -> dict:
    df = pd.concat(frames, ignore_index=True)
    df["amount_c"] = df["amount"].clip(0, 100)
    df["score_c"] = df["score"].clip(0, 100)
    conds = [f"({where})"] if where else []
    if "region" in group:  # rows outside the declared categories join no group
        conds.append("region IN ('north', 'south', 'east', 'west')")
    keys = "".join(f"CAST({g} AS VARCHAR) AS {g}, " for g in group)
    where_sql = f" WHERE {' AND '.join(conds)}" if conds else ""
    sql = f"SELECT {keys}{AGGS.format(a='amount_c', b='score_c')} FROM df{where_sql}"
    if group:
        sql += " GROUP BY " + ", ".join(group)
    con = duckdb.connect()
    con.register("df", df)
    out = con.execute(sql).fetchdf()
    mask = con.execute(f"SELECT {keys}score_c FROM df{where_sql}").fetchdf()
    return {"agg": out, "scores": mask}


def close(ours: float | None, ref: Any, scale: float) -> bool:
    ref_missing = ref is None or (isinstance(ref, float) and math.isnan(ref))
    if ours is None or ref_missing:
        return ours is None and ref_missing
    return math.isclose(ours, float(ref), rel_tol=1e-9, abs_tol=1e-9 * scale)


# No shrink phase: a failure reports its first example at once (shrinking DuckDB runs is slow).
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    parties=st.sampled_from([1, 3, 10]),
    data=st.data(),
    where=st.sampled_from(WHERES),
    group=st.sampled_from(GROUPS),
)
def test_every_aggregate_equals_duckdb_on_pooled_rows(
    parties: int,
    data: st.DataObject,
    where: str | None,
    group: tuple[str, ...],
) -> None:
    frames = [frame(data.draw(st.lists(row, max_size=25))) for _ in range(parties)]
    job = make_job(parties)
    select = "".join(f"{g}, " for g in group)
    sql = (
        f"SELECT {select}{AGGS.format(a='amount', b='score')}, HISTOGRAM(score, {BINS}) AS h, "
        f"MIN(score, {BINS}) AS mn, MAX(score, {BINS}) AS mx, QUANTILE(score, 0.3, {BINS}) AS q "
        f"FROM t"
        + (f" WHERE {where}" if where else "")
        + (" GROUP BY " + ", ".join(group) if group else "")
    )
    result = run_query(job, sql, transport=transport_for(job, frames))
    ref = pooled(frames, where, group)
    agg, scores = ref["agg"], ref["scores"]
    labels = result.labels
    for key, cells in zip(result.groups, result.cells, strict=True):
        sel = np.ones(len(agg), dtype=bool)
        ssel = np.ones(len(scores), dtype=bool)
        for g, v in zip(group, key, strict=True):
            sel &= (agg[g] == str(v)).to_numpy()
            ssel &= (scores[g] == str(v)).to_numpy()
        ans = dict(zip(labels, (c.value for c in cells), strict=True))
        if (
            not sel.any() or agg[sel].iloc[0]["n"] == 0
        ):  # a group without rows: zero counts, zero sum, undefined others
            assert ans["n"] == 0 and ans["n_a"] == 0 and ans["s"] == 0
            assert all(ans[k] is None for k in ("mean", "vs", "sds", "corr", "mn", "q"))
            continue
        ref_row = agg[sel].iloc[0]
        for k, scale in SCALE.items():
            r = ref_row[k]
            if k == "s" and (r is None or pd.isna(r)):
                r = 0.0  # SQL's SUM of no values is NULL; ours is 0
            assert close(ans[k], None if pd.isna(r) else r, scale), (k, ans[k], r, key)
        # COVAR/CORR: compare where the pooled variances are not degenerate.
        for k in ("cs", "cp"):
            r = ref_row[k]
            assert close(ans[k], None if pd.isna(r) else r, 1e4), (k, ans[k], r)
        s = scores[ssel]["score_c"].to_numpy()
        vp = ref_row["vp"]
        if len(s) > 1 and not pd.isna(vp) and vp > 1e-3 and np.var(s) > 1e-3:
            assert close(ans["corr"], ref_row["corr"], 1.0), (ans["corr"], ref_row["corr"])
        counts = np.histogram(np.clip(s, EDGES[0], EDGES[-1]), bins=EDGES)[0]
        assert ans["h"] == [float(c) for c in counts]
        lo_bin = np.searchsorted(EDGES, s.min(), side="right") - 1
        hi_bin = min(np.searchsorted(EDGES, s.max(), side="right") - 1, len(EDGES) - 2)
        assert ans["mn"] == EDGES[min(lo_bin, len(EDGES) - 2)]
        assert ans["mx"] == EDGES[hi_bin + 1]
        # QUANTILE: inside the bin where the pooled empirical CDF crosses q.
        q = ans["q"]
        assert EDGES[0] <= q <= EDGES[-1]
        i = min(np.searchsorted(EDGES, q, side="right") - 1, len(EDGES) - 2)
        if q == EDGES[i] and i > 0:
            i -= 1  # q on an edge: it closes the bin below
        n = len(s)
        assert (s < EDGES[i]).sum() <= 0.3 * n <= (s <= EDGES[i + 1]).sum() + 1e-9
