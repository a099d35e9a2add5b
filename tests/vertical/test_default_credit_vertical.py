"""Hetero LR on default-of-credit-card-clients (FATE's hetero split), CKKS backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import load_vertical_job
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.runner import VerticalRunner
from fedsilo.vertical.simulation import aligned_data, centralized_baseline

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "examples" / "vertical_default_credit" / "job.toml"
DATA = ROOT.parent / "shared" / "data" / "default_credit" / "default_credit_hetero_guest.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"default_credit data not found at {DATA}"),
]


def test_hetero_lr_matches_pooled_lr_and_beats_guest_only() -> None:
    job = load_vertical_job(JOB)
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    outcome = VerticalRunner(job, InProcessTransport(agents)).run()
    data = aligned_data(agents, outcome.alignment.train, outcome.alignment.test)
    assert data.num_aligned == 30_000
    losses, metrics = outcome.history["loss_per_epoch"], outcome.test
    pooled = centralized_baseline(job, data)
    guest = data.parties[job.guest.name]
    assert guest.labels is not None
    x = guest.features
    mean, std = x[data.train].mean(axis=0), x[data.train].std(axis=0)
    xs = (x - mean) / np.where(std == 0, 1.0, std)
    alone = LogisticRegression(max_iter=2000).fit(xs[data.train], guest.labels[data.train])
    guest_only = binary_metrics(guest.labels[data.test], alone.predict_proba(xs[data.test])[:, 1])
    fed, cen, own = metrics["auc"], pooled["auc"], guest_only["auc"]
    assert abs(fed - cen) <= 0.01, (fed, cen)
    assert fed >= own + 0.04, (fed, own)
    assert losses[-1] < losses[0]
