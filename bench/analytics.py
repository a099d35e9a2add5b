"""Federated query vs the same query on the pooled rows, in one process.

    .venv/bin/python bench/analytics.py [--parties 10] [--rows 1000000] [--keep DIR]

Writes ``parties`` Parquet files of ``rows`` rows each (deterministic from the seed) into a
temporary directory once, then times (median of ``--repeats``) a GROUP BY query with five
aggregates (COUNT, AVG, STDDEV, CORR, HISTOGRAM):

* federated: ``run_query`` in simulation: every party runs DuckDB on its own file (one thread
  per party, one party after another), statistics cross the in-process transport as encoded
  messages, are summed, noised (Gaussian, epsilon 1) and post-processed;
* pooled: DuckDB (default threads) on all files at once, the same aggregates natively.

Both sides time warm connections (a party agent keeps its DuckDB connection across queries).

Prints both times and federated / pooled.
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
from fedsilo.analytics.run import run_query, simulation_transport

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = write_parties(root, args.parties, args.rows, args.seed)
        print(f"wrote {args.parties} x {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        job = parse_analytics_job(
            {
                "name": "bench",
                "table": "transactions",
                "seed": args.seed,
                "parties": [
                    {"name": f"party-{i:02d}", "path": str(p)} for i, p in enumerate(paths)
                ],
                "columns": {
                    "region": {"type": "category", "categories": REGIONS},
                    "year": {"type": "category", "categories": [2023, 2024, 2025]},
                    "amount": {"type": "number", "lower": 0, "upper": 2000},
                    "score": {"type": "number", "lower": 300, "upper": 850},
                },
                "privacy": {"mechanism": "gaussian", "epsilon": 1.0, "max_epsilon": 1e9},
            },
            source="bench",
        )
        transport = simulation_transport(job)
        files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
        pooled_sql = POOLED.format(files=files)
        fed_times, pooled_times = [], []
        con = duckdb.connect()  # both sides keep a warm connection (parties: one per agent)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_query(job, QUERY, transport=transport, ledger_dir=root / "ledger")
            fed_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            con.execute(pooled_sql).fetchall()
            pooled_times.append(time.perf_counter() - t0)
        fed, pooled = statistics.median(fed_times), statistics.median(pooled_times)
        print(f"query: {QUERY}")
        print(
            f"federated ({args.parties} parties, simulation): {fed:.3f} s (median of {args.repeats})"
        )
        print(f"pooled DuckDB, one process:           {pooled:.3f} s")
        print(f"federated / pooled = {fed / pooled:.2f}x")


if __name__ == "__main__":
    main()
