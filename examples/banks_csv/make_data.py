"""Write one CSV per bank from scikit-learn's breast-cancer data, dressed as bank records.

Each bank gets different customers (rows); the columns are the same, as in horizontal
federated learning. Two categorical columns (`region`, `segment`) show shared one-hot
encoding, and a few missing `income` values show the imputation policy.

Run: python examples/banks_csv/make_data.py   (writes examples/banks_csv/data/*.csv)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

HERE = Path(__file__).resolve().parent
BANKS = ("bank-a", "bank-b", "bank-c")


def main(out_dir: Path = HERE / "data", seed: int = 7) -> list[Path]:
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(seed)
    data = frame.iloc[:, :8].copy()
    data.columns = [
        "income",
        "balance",
        "tenure",
        "age",
        "utilization",
        "inquiries",
        "late_30d",
        "late_90d",
    ]
    data.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(frame))])
    data["region"] = rng.choice(["north", "south", "east", "west"], size=len(frame))
    data["segment"] = np.where(frame["mean area"] > 700, "premium", "retail")
    data["default"] = np.where(frame["target"] == 0, "yes", "no")
    data.loc[rng.random(len(frame)) < 0.02, "income"] = np.nan
    out_dir.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(frame))
    paths = []
    for bank, rows in zip(BANKS, np.array_split(order, len(BANKS)), strict=True):
        path = out_dir / f"{bank.replace('-', '_')}.csv"
        data.iloc[np.sort(rows)].to_csv(path, index=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in main():
        print(f"wrote {p}")
