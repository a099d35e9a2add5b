"""SecureBoost on default-of-credit-card-clients (FATE's hetero split), CKKS backend.

5 trees of depth 3 rather than UniFed's 64 of depth 6: one depth-3 tree over the 24,000
training rows costs ~10 CPU s with CKKS on the 2-core dev machine (depth 6: ~19 s; Paillier
2048: minutes per tree, docs/benchmarks.md), so this keeps the test near a minute of CPU and
under ~3 minutes of wall time on the shared machine. The 64-tree run is bench/secureboost.py
--full. The centralized model gets exactly the same trees, depth, learning rate, bins and λ.
The job runs as every vertical job does: PSI over the two files, then the runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.runner import VerticalRunner
from fedsilo.vertical.simulation import centralized_gbm

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "default_credit"
PARAMS = {"n_trees": 5, "max_depth": 3, "learning_rate": 0.3, "n_bins": 32, "reg_lambda": 1.0}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"default_credit data not found at {DATA}"),
]


def test_secureboost_ckks_matches_centralized_gbm_and_beats_guest_only(tmp_path: Path) -> None:
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    # The host file in a different row order: only PSI over the ids lines the customers up.
    host.sample(frac=1.0, random_state=3).to_csv(tmp_path / "host.csv", index=False)
    job = parse_vertical_job(
        {
            "kind": "vertical",
            "name": "default_credit_sb",
            "algorithm": "secureboost",
            "seed": 0,
            "test_fraction": 0.2,
            "parties": [
                {
                    "name": "guest",
                    "path": str(DATA / "default_credit_hetero_guest.csv"),
                    "id_column": "id",
                    "label": "y",
                },
                {"name": "host", "path": str(tmp_path / "host.csv"), "id_column": "id"},
            ],
            "he": {"scheme": "ckks"},
            "secureboost": PARAMS,
        }
    )
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    outcome = VerticalRunner(job, InProcessTransport(agents)).run()
    assert outcome.alignment.aligned == 30_000
    assert outcome.n_trees == PARAMS["n_trees"]
    federated = outcome.test["auc"]

    guest, other = agents["guest"].aligned, agents["host"].aligned
    assert guest is not None and other is not None and guest.labels is not None
    xg, xh, y = guest.features, other.features, guest.labels
    tr, te = outcome.alignment.train, outcome.alignment.test
    params = job.secureboost.params()
    pooled = centralized_gbm(params).fit(np.hstack([xg[tr], xh[tr]]), y[tr])
    centralized = roc_auc_score(y[te], pooled.predict_proba(np.hstack([xg[te], xh[te]]))[:, 1])
    alone = centralized_gbm(params).fit(xg[tr], y[tr])
    guest_only = roc_auc_score(y[te], alone.predict_proba(xg[te])[:, 1])

    assert abs(federated - centralized) <= 0.01, (federated, centralized)
    assert federated >= guest_only + 0.03, (federated, guest_only)  # the host's columns count
    losses = outcome.history["train_loss_per_tree"]
    assert losses[-1] < losses[0]
