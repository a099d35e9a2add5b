"""Write the breast-cancer vertical demo: a guest (bank-like, label holder) and a host.

FATE's split of scikit-learn's breast-cancer data: the guest has the label ``y`` and the first
10 features, the host the other 20. Only part of the customers are shared: each side misses a
different random subset of rows, and the host's file is in a different order, so PSI has real
work to do. Run: .venv/bin/python examples/vertical_breast_cancer/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer


def write(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    data = load_breast_cancer()
    x, y = data.data, data.target
    ids = np.array([f"P{i:04d}" for i in range(len(y))])
    rng = np.random.default_rng(seed)
    guest_rows = np.sort(rng.choice(len(y), size=len(y) - 60, replace=False))
    host_rows = rng.permutation(rng.choice(len(y), size=len(y) - 70, replace=False))
    guest = pd.DataFrame(x[guest_rows, :10], columns=[f"x{j}" for j in range(10)])
    guest.insert(0, "y", y[guest_rows])
    guest.insert(0, "id", ids[guest_rows])
    host = pd.DataFrame(x[host_rows, 10:], columns=[f"x{j}" for j in range(20)])
    host.insert(0, "id", ids[host_rows])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "breast_hetero_guest.csv", out_dir / "breast_hetero_host.csv"
    guest.to_csv(paths[0], index=False)
    host.to_csv(paths[1], index=False)
    return paths


if __name__ == "__main__":
    for path in write(Path(__file__).parent / "data"):
        print(f"wrote {path}")
