"""Write the breast-cancer vertical demo: a guest (bank-like, label holder) and a host.

FATE's split of scikit-learn's breast-cancer data: the guest has the label ``y`` and the first
10 features, the host the other 20. Only part of the customers are shared: each side misses a
different random subset of rows, and the host's file is in a different order, so PSI has real
work to do. It also writes two files of customers to score with a trained run
(:func:`write_new`, ``score.toml``). Run: .venv/bin/python examples/vertical_breast_cancer/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

N = 569  # scikit-learn's breast-cancer rows


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    guest_rows = np.sort(rng.choice(n, size=n - 60, replace=False))
    host_rows = rng.permutation(rng.choice(n, size=n - 70, replace=False))
    return guest_rows, host_rows


def _write(
    out_dir: Path,
    names: tuple[str, str],
    guest_rows: np.ndarray,
    host_rows: np.ndarray,
    *,
    label: bool,
) -> tuple[Path, Path]:
    """The bank's file (id, label if asked, x0..x9) and the provider's (id, its 20 columns)."""
    data = load_breast_cancer()
    x, y = data.data, data.target
    ids = np.array([f"P{i:04d}" for i in range(len(y))])
    guest = pd.DataFrame(x[guest_rows, :10], columns=[f"x{j}" for j in range(10)])
    if label:
        guest.insert(0, "y", y[guest_rows])
    guest.insert(0, "id", ids[guest_rows])
    host = pd.DataFrame(x[host_rows, 10:], columns=[f"x{j}" for j in range(20)])
    host.insert(0, "id", ids[host_rows])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / names[0], out_dir / names[1]
    guest.to_csv(paths[0], index=False)
    host.to_csv(paths[1], index=False)
    return paths


def write(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    guest_rows, host_rows = _rows(N, seed)
    names = ("breast_hetero_guest.csv", "breast_hetero_host.csv")
    return _write(out_dir, names, guest_rows, host_rows, label=True)


def write_new(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Files of customers to score (no label): the bank's 60 customers it did not train on,
    plus its first 100 training customers again (re-scored: those that were held out get
    the training run's scores); the provider knows every customer except 12 of the new ones,
    which cannot be scored (reported by count)."""
    guest_rows, _ = _rows(N, seed)
    new = np.setdiff1d(np.arange(N), guest_rows)
    bank_rows = np.concatenate([new, guest_rows[:100]])
    provider_rows = np.setdiff1d(np.arange(N), new[:12])
    names = ("new_bank_customers.csv", "new_provider_customers.csv")
    return _write(out_dir, names, bank_rows, provider_rows, label=False)


if __name__ == "__main__":
    out = Path(__file__).parent / "data"
    for path in (*write(out), *write_new(out)):
        print(f"wrote {path}")
