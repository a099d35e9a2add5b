"""A plausible metrics.json for the report tests: 3 parties, 10 rounds, one failed round.

Also the source of the sample report: ``python tests/report/report_sample.py OUT.html``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

PARTIES = ("org-a", "org-b", "org-c")
CLASSES = [str(c) for c in range(10)]
# Label-skewed partition (Dirichlet-like): counts per class, per party.
LABEL_COUNTS = {
    "org-a": [212, 35, 140, 18, 96, 120, 8, 150, 60, 228],
    "org-b": [40, 260, 75, 190, 22, 30, 205, 64, 118, 10],
    "org-c": [118, 92, 55, 81, 172, 66, 60, 38, 95, 47],
}
FAILED_ROUND = 4
FAILED_PARTY = "org-c"


def _metrics(acc: float, loss: float) -> dict[str, float]:
    return {
        "loss": round(loss, 6),
        "accuracy": round(acc, 6),
        "precision": round(acc - 0.012, 6),
        "recall": round(acc - 0.018, 6),
        "f1": round(acc - 0.016, 6),
        "auc": round(min(0.999, 0.5 + acc * 0.52), 6),
    }


def make_metrics(rounds: int = 10) -> dict[str, Any]:
    """A deterministic metrics dict shaped like ``Result.metrics_json()``."""
    party_offset = {"org-a": 0.012, "org-b": -0.021, "org-c": 0.004}
    history = []
    for r in range(1, rounds + 1):
        acc = 0.93 - 0.55 * math.exp(-0.55 * r)
        loss = 0.22 + 1.9 * math.exp(-0.5 * r)
        failures = {FAILED_PARTY: "timed out after 30 s"} if r == FAILED_ROUND else {}
        participants = [p for p in PARTIES if p not in failures]
        history.append(
            {
                "round": r,
                "participants": participants,
                "failures": failures,
                "global": _metrics(acc, loss),
                "parties": {
                    p: _metrics(acc + party_offset[p] * (1 + 1 / r), loss - party_offset[p])
                    for p in participants
                },
                "train_loss": round(loss * 0.9, 6),
                "duration_s": round(0.35 + 0.02 * r, 3),
                "attempts": 1,
            }
        )
    last = history[-1]
    return {
        "fedsilo_version": "0.1.0",
        "job": {
            "name": "mnist-3orgs",
            "kind": "horizontal",
            "seed": 0,
            "rounds": rounds,
            "config": {
                "name": "mnist-3orgs",
                "seed": 0,
                "rounds": rounds,
                "data": {
                    "dataset": "mnist-5k",
                    "num_parties": 3,
                    "partition": "dirichlet",
                    "alpha": 0.5,
                    "holdout": 0.2,
                },
                "model": {"kind": "mlp", "hidden": [128, 64], "dropout": 0.1},
                "local": {"epochs": 1, "batch_size": 32, "lr": 0.01, "optimizer": "sgd"},
                "aggregation": {"strategy": "fedavg"},
                "selection": {"fraction": 1.0, "min_parties": 2},
                "timeout_s": 30,
            },
        },
        "data": {
            "dataset": "mnist-5k",
            "kind": "image",
            "features": 784,
            "feature_names": None,
            "classes": CLASSES,
            "test_examples": 1000,
            "parties": {
                p: {
                    "train_examples": sum(counts),
                    "holdout_examples": sum(counts) // 4,
                    "label_counts": dict(zip(CLASSES, counts, strict=True)),
                }
                for p, counts in LABEL_COUNTS.items()
            },
        },
        "history": history,
        "final": {"global": dict(last["global"]), "parties": copy.deepcopy(last["parties"])},
        "baseline": _metrics(0.951, 0.171),
        "wall_time_s": 12.34,
    }


def make_many_metrics(num_parties: int, rounds: int = 10) -> dict[str, Any]:
    """:func:`make_metrics` with ``num_parties`` parties (label counts and accuracies spread
    deterministically), for the report's large-federation layout."""
    metrics = make_metrics(rounds)
    names = [f"party-{i + 1}" for i in range(num_parties)]
    for r in metrics["history"]:
        base = r["global"]["accuracy"]
        r["failures"] = {}
        r["participants"] = names
        r["parties"] = {
            p: _metrics(base - 0.1 + 0.2 * ((i * 7919) % num_parties) / num_parties, 0.5)
            for i, p in enumerate(names)
        }
    metrics["final"]["parties"] = copy.deepcopy(metrics["history"][-1]["parties"])
    metrics["data"]["parties"] = {
        p: {
            "train_examples": 40,
            "holdout_examples": 10,
            "label_counts": {c: (i + int(c)) % 7 for c in CLASSES},
        }
        for i, p in enumerate(names)
    }
    return metrics


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from fedsilo.report import write_report

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sample_report.html")
    print(write_report(make_metrics(), out))
