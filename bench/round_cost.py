"""What one simulated round costs, in wall and CPU seconds, in this process.

The mnist-5k MLP 784-128-10 job of ``bench/vs_flower.py`` (100 parties, every party every
round, epochs 1, batch 32, SGD lr 0.05, ``evaluation.every = rounds``), run with
``fedsilo.simulate`` under each ``[simulation]`` setting asked for (default: workers 1 and 2,
vectorized; ``--off`` adds one-by-one training). Printed per setting: the median over rounds
2.. of the round's wall seconds and of the process CPU seconds between round ends (every
thread), so a loaded machine's numbers can still be compared (CPU seconds are what an idle
machine's wall approaches with one worker); then the load average. The model is the same bit
for bit whatever ``workers`` is, so the accuracies printed must agree across workers.

    .venv/bin/python bench/round_cost.py            # 10 rounds, 100 parties
    .venv/bin/python bench/round_cost.py --quick    # 4 rounds
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from typing import Any

from fedsilo.simulation import Progress, simulate


def job(rounds: int, parties: int, simulation: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "round-cost",
        "seed": 0,
        "rounds": rounds,
        "training": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
        "selection": {"fraction": 1.0, "min_parties": 2},
        "evaluation": {"every": rounds},
        "data": {"dataset": "mnist-5k", "num_parties": parties, "partition": "iid"},
        "model": {"name": "mlp", "hidden": [128]},
        "simulation": simulation,
    }


def run(rounds: int, parties: int, simulation: dict[str, Any]) -> str:
    ends: list[float] = []
    result = simulate(
        job(rounds, parties, simulation),
        progress=Progress(on_round=lambda record: ends.append(time.process_time())),
    )
    wall = statistics.median(r.duration_s for r in result.history[1:])
    cpu = statistics.median(b - a for a, b in itertools.pairwise(ends))
    accuracy = result.history[-1].global_metrics["accuracy"]
    return f"wall {wall:.3f} s/round, CPU {cpu:.3f} s/round, accuracy {accuracy:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 rounds")
    parser.add_argument("--parties", type=int, default=100)
    parser.add_argument("--off", action="store_true", help="also train one by one")
    args = parser.parse_args()
    rounds = 4 if args.quick else 10
    settings: list[dict[str, Any]] = [{"workers": 1}, {"workers": 2}]
    if args.off:
        settings += [{"workers": 2, "vectorize": "off"}]
    print(f"load average before: {os.getloadavg()}")
    for simulation in settings:
        print(f"mnist-5k MLP 784-128-10, {args.parties} parties, {simulation}: ", end="")
        print(run(rounds, args.parties, simulation), flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
