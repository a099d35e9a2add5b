"""10,000 simulated parties of logistic regression on synthetic data: peak memory and time.

    .venv/bin/python bench/many_parties.py            # 10,000 parties, 10 rounds
    .venv/bin/python bench/many_parties.py --quick    # 1,000 parties, 2 rounds

Data: scikit-learn ``make_classification`` (20 features, 10 informative, 2 classes), 20 rows
per party, written to one CSV that the job splits iid (``data.path``), so every party goes
through the whole federated setup (schema, statistics, preprocessing plan, held-out split).
10 % of the parties train each round (vectorized: ``[simulation]`` defaults), the global
model is evaluated on the central test split every round and every party once, at the end.
Prints the peak RSS of this process (``ru_maxrss``; the target is under 4 GB), the wall time
of the whole run and the median seconds per round, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification

from fedsilo.simulation import simulate

ROWS_PER_PARTY = 20
TARGET_BYTES = 4 * 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 parties, 2 rounds")
    ap.add_argument("--parties", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    parties = args.parties or (1_000 if args.quick else 10_000)
    rounds = args.rounds or (2 if args.quick else 10)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="fedsilo-many-") as tmp:
        x, y = make_classification(
            n_samples=parties * ROWS_PER_PARTY, n_features=20, n_informative=10, random_state=0
        )
        csv = Path(tmp) / "synthetic.csv"
        pd.DataFrame(x, columns=[f"x{i}" for i in range(20)]).assign(label=y).to_csv(
            csv, index=False
        )
        del x, y
        job = {
            "name": f"logreg-{parties}",
            "seed": 0,
            "rounds": rounds,
            "data": {
                "path": str(csv),
                "label": "label",
                "num_parties": parties,
                "partition": "iid",
                "test_fraction": 0.1,
            },
            "model": {"name": "logreg"},
            "training": {"epochs": 1, "batch_size": 32, "learning_rate": 0.1},
            "selection": {"fraction": 0.1, "min_parties": 2},
            "evaluation": {"every": rounds},
        }
        started = time.monotonic()
        result = simulate(job)
        wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    per_round = statistics.median(r.duration_s for r in result.history)
    print(
        f"{parties:,} parties, {rounds} rounds: peak RSS {peak / 2**30:.2f} GB "
        f"({peak / TARGET_BYTES:.2f} of the 4 GB target), wall {wall:.1f} s, "
        f"{per_round:.2f} s/round (median), final accuracy "
        f"{result.final_global['accuracy']:.4f}, parties with final metrics "
        f"{len(result.final_parties):,}"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
