"""Federated vs centralized accuracy, and wall time per round, on the issue's jobs.

    .venv/bin/python bench/convergence.py [--rounds 20]

For each job the same model is trained on the pooled training rows in the same process
(`--baseline`), so the printed ratio is federated accuracy / centralized accuracy.
Seconds per round are the median over rounds (round 1 includes PyTorch warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import fedsilo
from fedsilo.config import load_job, parse_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def jobs(rounds: int) -> list[tuple[str, fedsilo.JobConfig]]:
    hospitals = load_job(EXAMPLES / "hospitals_breast_cancer.toml").with_overrides(rounds=rounds)
    mnist = load_job(EXAMPLES / "mnist_3orgs.toml").with_overrides(rounds=rounds)

    def dirichlet(job: fedsilo.JobConfig, alpha: float) -> fedsilo.JobConfig:
        raw = job.model_dump(mode="json")
        raw["data"] |= {"partition": "dirichlet", "alpha": alpha}
        return parse_job(raw, source="bench")

    return [
        ("breast-cancer, 3 parties, dirichlet 0.5, logreg", hospitals),
        ("breast-cancer, 3 parties, dirichlet 0.1, logreg", dirichlet(hospitals, 0.1)),
        ("mnist-5k, 3 parties, iid, mlp[128]", mnist),
        ("mnist-5k, 3 parties, dirichlet 0.1, mlp[128]", dirichlet(mnist, 0.1)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"{'job':<50} {'fed acc':>8} {'central':>8} {'ratio':>7} {'s/round':>8}")
    for label, job in jobs(args.rounds):
        started = time.perf_counter()
        result = fedsilo.simulate(job, baseline=True)
        assert result.baseline is not None
        fed = result.final_global["accuracy"]
        central = result.baseline["accuracy"]
        per_round = statistics.median(r.duration_s for r in result.history)
        print(
            f"{label:<50} {fed:>8.4f} {central:>8.4f} {fed / central:>7.4f} {per_round:>8.3f}"
            f"   (total {time.perf_counter() - started:.1f} s)"
        )


if __name__ == "__main__":
    main()
