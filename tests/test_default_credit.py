"""Real data: Taiwan credit-card default, rows split across three banks as FATE ships it.

Uses ../shared/data (reference data on development machines and CI); skips where absent.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

import fedsilo
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "default_credit"
PARTIES = ("guest", "host_1", "host_2")

pytestmark = pytest.mark.skipif(
    not (DATA / "default_credit_homo_test.csv").exists(),
    reason=f"reference data not found at {DATA} (only on development machines and CI)",
)


@pytest.mark.slow
def test_three_banks_logreg_matches_pooled_scikit_learn_auc() -> None:
    job = {
        "name": "default-credit-homo",
        "seed": 0,
        "rounds": 10,
        "data": {
            "label": "y",
            "id": "id",
            "test_path": str(DATA / "default_credit_homo_test.csv"),
        },
        "parties": [
            {"name": p.replace("_", "-"), "path": str(DATA / f"default_credit_homo_{p}.csv")}
            for p in PARTIES
        ],
        "model": {"name": "logreg"},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.05},
    }
    result = fedsilo.simulate(job)
    assert result.test_examples == 6000

    pooled = pd.concat([pd.read_csv(DATA / f"default_credit_homo_{p}.csv") for p in PARTIES])
    test = pd.read_csv(DATA / "default_credit_homo_test.csv")
    features = [c for c in pooled.columns if c.startswith("x")]
    scaler = StandardScaler().fit(pooled[features])
    reference = LogisticRegression(max_iter=1000).fit(
        scaler.transform(pooled[features]), pooled["y"]
    )
    reference_auc = roc_auc_score(
        test["y"], reference.predict_proba(scaler.transform(test[features]))[:, 1]
    )

    assert reference_auc == pytest.approx(0.72, abs=0.02)  # the published figure for LR
    assert result.final_global["auc"] >= reference_auc - 0.01
