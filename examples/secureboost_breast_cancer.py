"""SecureBoost on breast cancer split FATE-style: guest = first 10 features + label, host = 20.

The same path as `fedsilo simulate examples/vertical_breast_cancer/secureboost.toml`: PSI over
the two parties' IDs, then SecureBoost relayed by the coordinator, held-out metrics computed by
the guest, each party's model part written beside metrics.json.

Run: .venv/bin/python examples/secureboost_breast_cancer.py [ckks|paillier] [n_trees]
"""

from __future__ import annotations

import sys
import tempfile

from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.simulation import simulate_vertical


def main() -> None:
    scheme = sys.argv[1] if len(sys.argv) > 1 else "ckks"
    n_trees = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    job = parse_vertical_job(
        {
            "kind": "vertical",
            "name": "secureboost_breast_cancer",
            "algorithm": "secureboost",
            "seed": 0,
            "test_fraction": 0.2,
            "parties": [
                {"name": "bank", "builtin": "breast_cancer/guest", "label": "y"},
                {"name": "provider", "builtin": "breast_cancer/host"},
            ],
            "he": {"scheme": scheme, "key_bits": 1024},
            "secureboost": {"n_trees": n_trees, "max_depth": 3, "learning_rate": 0.3},
        }
    )
    result = simulate_vertical(job, baseline=True)
    doc = result.metrics_json()
    seconds = [tree["duration_s"] for tree in doc["history"]]
    print(
        f"{scheme}: {sum(seconds) / len(seconds):.1f} s/tree, held-out AUC "
        f"{doc['final']['global']['auc']:.4f} over {doc['vertical']['alignment']['test']} rows"
    )
    print(f"centralized HistGradientBoosting baseline: held-out AUC {doc['baseline']['auc']:.4f}")
    with tempfile.TemporaryDirectory() as out:
        models = result.save(out)["model"]
        for path in sorted(models.iterdir()):
            print(f"model part of {path.stem}: {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
