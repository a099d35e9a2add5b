"""SecureBoost on default-of-credit-card-clients (FATE's hetero split), CKKS backend.

5 trees of depth 3 rather than UniFed's 64 of depth 6: one depth-3 tree over the 24,000
training rows costs ~10 CPU s with CKKS on the 2-core dev machine (depth 6: ~19 s; Paillier
2048: minutes per tree, docs/benchmarks.md), so this keeps the test near a minute of CPU and
under ~3 minutes of wall time on the shared machine. The 64-tree run is bench/secureboost.py
--full. The centralized model gets exactly the same trees, depth, learning rate, bins and λ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fedsilo.vertical.secureboost import TreeParams, predict_secureboost, train_secureboost
from fedsilo.vertical.simulation import centralized_gbm

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "default_credit"
PARAMS = TreeParams(n_trees=5, max_depth=3, learning_rate=0.3, n_bins=32, reg_lambda=1.0)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"default_credit data not found at {DATA}"),
]


def test_secureboost_ckks_matches_centralized_gbm_and_beats_guest_only() -> None:
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    # The host file in a different row order: only the id join lines the customers up.
    host = host.sample(frac=1.0, random_state=3).reset_index(drop=True)
    guest = guest.rename(columns={f"x{i}": f"g{i}" for i in range(13)})
    host = host.rename(columns={f"x{i}": f"h{i}" for i in range(10)})
    both = guest.merge(host, on="id", validate="one_to_one")
    assert len(both) == 30_000
    xg = both[[f"g{i}" for i in range(13)]].to_numpy(float)
    xh = both[[f"h{i}" for i in range(10)]].to_numpy(float)
    y = both["y"].to_numpy(float)
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:24_000], order[24_000:]

    result = train_secureboost(xg[tr], y[tr], {"host": xh[tr]}, PARAMS, scheme="ckks", seed=0)
    assert len(result.trees) == PARAMS.n_trees
    proba = predict_secureboost(result.guest_model, xg[te], {"host": xh[te]}, result.host_models)
    federated = roc_auc_score(y[te], proba)

    pooled = centralized_gbm(PARAMS).fit(np.hstack([xg[tr], xh[tr]]), y[tr])
    centralized = roc_auc_score(y[te], pooled.predict_proba(np.hstack([xg[te], xh[te]]))[:, 1])
    alone = centralized_gbm(PARAMS).fit(xg[tr], y[tr])
    guest_only = roc_auc_score(y[te], alone.predict_proba(xg[te])[:, 1])

    assert abs(federated - centralized) <= 0.01, (federated, centralized)
    assert federated >= guest_only + 0.03, (federated, guest_only)  # the host's columns count
    assert result.train_loss[-1] < result.train_loss[0]
