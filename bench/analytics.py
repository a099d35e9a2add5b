"""Federated query vs the same query on the pooled rows, in one process.

    .venv/bin/python bench/analytics.py [--parties 10] [--rows 1000000] [--repeats 3]
        [--secure [--variant secagg+|secagg]]

Writes ``parties`` Parquet files of ``rows`` rows each (deterministic from the seed) into a
temporary directory once, then times (median of ``--repeats``) a GROUP BY query with five
aggregates (COUNT, AVG, STDDEV, CORR, HISTOGRAM):

* federated: ``run_query`` in simulation: every party runs DuckDB on its own file (one thread
  per party, one party after another), statistics cross the in-process transport as encoded
  messages, are summed, noised (Gaussian, epsilon 1) and post-processed;
* federated, secure (``--secure``): the same, with ``[privacy.secure_aggregation]``: four
  protocol exchanges (X25519, Shamir, AES-GCM, AES-CTR masks over the 64-bit fixed-point
  statistics) instead of one plain exchange; the same seeded noise, so the answers differ from
  the plain run only by the fixed-point error (printed);
* pooled: DuckDB (default threads) on all files at once, the same aggregates natively.

Both sides time warm connections (a party agent keeps its DuckDB connection across queries).

Prints the times and federated / pooled (the <= 3x target applies to the plain run).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from fedsilo.analytics.config import parse_analytics_job
from fedsilo.analytics.run import Cell, run_query, simulation_transport

REGIONS = ["north", "south", "east", "west", "central"]
EDGES = [300, 400, 500, 600, 700, 850]
QUERY = (
    "SELECT region, COUNT(*), AVG(amount), STDDEV(amount), CORR(amount, score), "
    "HISTOGRAM(score, BINS=[300, 400, 500, 600, 700, 850]) FROM transactions "
    "WHERE year = 2025 GROUP BY region"
)
POOLED = (
    "SELECT region, COUNT(*), AVG(amount), STDDEV(amount), CORR(amount, score), "
    + ", ".join(
        f"COUNT_IF(score >= {a} AND score < {b})" if b != EDGES[-1] else f"COUNT_IF(score >= {a})"
        for a, b in itertools.pairwise(EDGES)
    )
    + " FROM read_parquet({files}) WHERE year = 2025 GROUP BY region"
)


def write_parties(out: Path, parties: int, rows: int, seed: int) -> list[Path]:
    paths = []
    for i in range(parties):
        rng = np.random.default_rng([seed, i])
        df = pd.DataFrame(
            {
                "region": pd.Categorical(rng.choice(REGIONS, rows)).astype(str),
                "year": rng.choice(np.array([2023, 2024, 2025], dtype=np.int64), rows),
                "amount": rng.lognormal(4.5, 0.9, rows).round(2),
                "score": rng.integers(300, 851, rows).astype(np.float64),
            }
        )
        path = out / f"party_{i:02d}.parquet"
        df.to_parquet(path, index=False)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--secure", action="store_true", help="also time secure aggregation")
    parser.add_argument("--variant", choices=["secagg", "secagg+"], default="secagg+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = write_parties(root, args.parties, args.rows, args.seed)
        print(f"wrote {args.parties} x {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        raw = {
            "name": "bench",
            "table": "transactions",
            "seed": args.seed,
            "parties": [{"name": f"party-{i:02d}", "path": str(p)} for i, p in enumerate(paths)],
            "columns": {
                "region": {"type": "category", "categories": REGIONS},
                "year": {"type": "category", "categories": [2023, 2024, 2025]},
                "amount": {"type": "number", "lower": 0, "upper": 2000},
                "score": {"type": "number", "lower": 300, "upper": 850},
            },
            "privacy": {"mechanism": "gaussian", "epsilon": 1.0, "max_epsilon": 1e9},
        }
        job = parse_analytics_job(raw, source="bench")
        transport = simulation_transport(job)
        secure_job = parse_analytics_job(
            raw
            | {
                "privacy": raw["privacy"]
                | {"secure_aggregation": {"enabled": True, "variant": args.variant}}
            },
            source="bench",
        )
        secure_transport = simulation_transport(secure_job) if args.secure else None
        files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
        pooled_sql = POOLED.format(files=files)
        fed_times, secure_times, pooled_times = [], [], []
        con = duckdb.connect()  # both sides keep a warm connection (parties: one per agent)
        max_diff = 0.0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plain = run_query(job, QUERY, transport=transport)
            fed_times.append(time.perf_counter() - t0)
            if secure_transport is not None:
                t0 = time.perf_counter()
                sec = run_query(secure_job, QUERY, transport=secure_transport)
                secure_times.append(time.perf_counter() - t0)
                max_diff = max(max_diff, _max_diff(plain.cells, sec.cells))
            t0 = time.perf_counter()
            con.execute(pooled_sql).fetchall()
            pooled_times.append(time.perf_counter() - t0)
        fed, pooled = statistics.median(fed_times), statistics.median(pooled_times)
        print(f"query: {QUERY}")
        print(
            f"federated ({args.parties} parties, simulation): {fed:.3f} s (median of {args.repeats})"
        )
        if secure_times:
            sec_t = statistics.median(secure_times)
            print(f"federated, secure aggregation ({args.variant}): {sec_t:.3f} s")
        print(f"pooled DuckDB, one process:           {pooled:.3f} s")
        print(f"federated / pooled = {fed / pooled:.2f}x")
        if secure_times:
            print(f"federated secure / pooled = {sec_t / pooled:.2f}x")
            print(f"secure / plain federated = {sec_t / fed:.2f}x")
            print(f"max |secure - plain| over the answers (same seeded noise): {max_diff:.3g}")


def _max_diff(a: list[list[Cell]], b: list[list[Cell]]) -> float:
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        for ca, cb in zip(ra, rb, strict=True):
            va = np.atleast_1d(np.asarray(ca.value, dtype=float))
            vb = np.atleast_1d(np.asarray(cb.value, dtype=float))
            worst = max(worst, float(np.nanmax(np.abs(va - vb), initial=0.0)))
    return worst


if __name__ == "__main__":
    main()
