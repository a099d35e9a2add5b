"""Train from pandas DataFrames in Python: no files, the same schema checks as files.

Two banks (horizontal: same columns, different customers) and a bank + a shop (vertical: same
customers, different columns; aligned by PSI on the id column) pass their rows as DataFrames.

Run: python examples/use_model/dataframes.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

import fedsilo


def bank(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows)
    region = rng.choice(["east", "north", "west"], rows)
    score = income / 15 + (region == "east") * 1.5 + rng.normal(0, 1, rows)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(rows)],
            "income": income,
            "region": region,  # a category: one-hot encoded the same way at every party
            "default": np.where(score > np.median(score), "yes", "no"),
        }
    )


def horizontal() -> None:
    job = {  # no data source: the parties are the DataFrames' names
        "name": "banks-frames",
        "rounds": 10,
        "data": {"label": "default", "id": "customer_id"},
        "model": {"name": "logreg"},
        "training": {"learning_rate": 0.1},
    }
    result = fedsilo.simulate(job, data={"bank-a": bank(300, 0), "bank-b": bank(200, 1)})
    print("horizontal accuracy:", round(result.final_global["accuracy"], 4))


def vertical() -> None:
    data = load_breast_cancer()
    ids = [f"id{i}" for i in range(len(data.target))]
    guest = pd.DataFrame(data.data[:, :10], columns=data.feature_names[:10])
    guest.insert(0, "id", ids)
    guest["malignant"] = 1 - data.target
    host = pd.DataFrame(data.data[:, 10:], columns=data.feature_names[10:])
    host.insert(0, "id", ids)
    job = {
        "kind": "vertical",
        "name": "hospital-lab-frames",
        "parties": [{"name": "hospital", "label": "malignant"}, {"name": "lab"}],
        "hetero_lr": {"epochs": 3},
    }
    result = fedsilo.simulate(
        job, data={"hospital": guest, "lab": host.sample(frac=0.9, random_state=0)}
    )
    print(
        "vertical aligned:",
        result.alignment["aligned"],
        "AUC:",
        round(result.final_global["auc"], 4),
    )


if __name__ == "__main__":
    horizontal()
    vertical()
