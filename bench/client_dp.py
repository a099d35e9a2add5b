"""Client-level DP-FedAvg: accuracy vs the non-private run at a few noise levels.

    .venv/bin/python bench/client_dp.py [--rounds 30] [--parties 100] [--fraction 0.2]
        [--plot docs/client_dp_accuracy.png]

mnist-5k split IID across ``--parties`` simulated parties, logistic regression, a fraction of
parties per round; noise on the coordinator (trusted), fixed clip norm and adaptive clipping
(median). Epsilon is at delta = 1e-5 from the RDP accountant as fedsilo reports it: a
fixed-size selection of ``fraction * parties`` accounted as sampling without replacement
(replace-one-party relation). The non-private run is the same job with client DP off, in this
process. The runs set the simulation-only ``[privacy] reproducible_noise`` so the table is
reproducible (noise seeded from the job seed).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import fedsilo
from fedsilo.config import parse_job

ROOT = Path(__file__).resolve().parents[1]
NOISE = (0.3, 0.7, 1.0)


def job(args: argparse.Namespace, client_dp: dict[str, Any] | None) -> fedsilo.JobConfig:
    privacy: dict[str, Any] = {"delta": 1e-5, "reproducible_noise": True}
    if client_dp is not None:
        privacy["client_dp"] = {"enabled": True, **client_dp}
    return parse_job(
        {
            "name": "client-dp",
            "seed": 0,
            "rounds": args.rounds,
            "data": {
                "dataset": "mnist-5k",
                "num_parties": args.parties,
                "partition": "iid",
                "min_partition_size": 5,
            },
            "model": {"name": "logreg"},
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.05},
            "selection": {"fraction": args.fraction, "min_parties": 2},
            "privacy": privacy,
        },
        source="bench",
    )


def plot(base: float, rows: list[tuple[float, bool, float, float]], path: Path) -> None:
    """Accuracy against epsilon: fixed and adaptive clipping, the non-private run as a line."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    for adaptive in (False, True):
        mine = sorted((eps, acc) for _, a, acc, eps in rows if a is adaptive)
        ax.plot(
            [e for e, _ in mine],
            [a for _, a in mine],
            marker="o",
            label="adaptive clip (median)" if adaptive else "fixed clip C=1",
        )
    ax.axhline(base, linestyle="--", color="grey", label="no DP")
    ax.set_xscale("log")
    ticks = sorted({eps for *_, eps in rows})
    ax.set_xticks(ticks, [f"{e:.1f}" for e in ticks])
    ax.minorticks_off()
    ax.set_xlabel("epsilon (delta 1e-5, RDP)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--parties", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "client_dp_accuracy.png")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # RDP orders that do not converge
    base = fedsilo.simulate(job(args, None)).final_global["accuracy"]
    print(
        f"mnist-5k, {args.parties} parties, fraction {args.fraction}, {args.rounds} rounds, logreg"
    )
    print(f"{'setting':<34} {'accuracy':>8} {'vs plain':>9} {'epsilon':>8}")
    print(f"{'non-private':<34} {base:>8.3f} {0:>+9.3f} {'-':>8}")
    rows: list[tuple[float, bool, float, float]] = []
    for z in NOISE:
        for adaptive in (False, True):
            dp = {"noise_multiplier": z, "clip_norm": 1.0, "adaptive_clipping": adaptive}
            result = fedsilo.simulate(job(args, dp))
            acc = result.final_global["accuracy"]
            eps = result.history[-1].privacy["epsilon"]
            label = f"z={z} C=1.0 {'adaptive' if adaptive else 'fixed'}"
            print(f"{label:<34} {acc:>8.3f} {acc - base:>+9.3f} {eps:>8.2f}")
            rows.append((z, adaptive, acc, eps))
    plot(base, rows, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
