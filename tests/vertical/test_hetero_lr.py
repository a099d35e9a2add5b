"""Hetero LR end to end: accuracy vs centralized LR, exactness vs plaintext, determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.hetero_lr import HeteroLrParty
from fedsilo.vertical.runner import VerticalRunner
from fedsilo.vertical.simulation import simulate_vertical

pytestmark = pytest.mark.slow


def test_cli_breast_cancer_ckks_matches_centralized(
    breast_files: tuple[Path, Path], tmp_path: Path
) -> None:
    guest, host = breast_files
    job = Path(__file__).resolve().parents[2] / "examples" / "vertical_breast_cancer" / "job.toml"
    text = job.read_text().replace("data/breast_hetero_guest.csv", guest.as_posix())
    text = text.replace("data/breast_hetero_host.csv", host.as_posix())
    (tmp_path / "job.toml").write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["simulate", str(tmp_path / "job.toml"), "--baseline", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["vertical"]["alignment"]["aligned"] < 569  # only part of the customers
    fed, central = metrics["final"]["global"]["auc"], metrics["baseline"]["auc"]
    assert fed >= 0.98 and abs(fed - central) <= 0.01, (fed, central)
    assert {"ks", "accuracy", "f1"} <= set(metrics["final"]["global"])
    bank = load_file(str(out / "models" / "bank.safetensors"))
    provider = load_file(str(out / "models" / "provider.safetensors"))
    assert bank["weights"].shape == (11,) and provider["weights"].shape == (20,)  # own parts only
    html = (out / "report.html").read_text()
    assert "hetero logistic regression" in html
    assert "data:image/png;base64," in html and 'src="http' not in html
    assert f"{fed:.4f}" in html  # the held-out AUC shown is the one in metrics.json


def test_paillier_breast_cancer_matches_centralized(
    breast_job: Callable[..., dict[str, Any]],
) -> None:
    job = parse_vertical_job(breast_job("paillier", epochs=3))
    result = simulate_vertical(job, baseline=True)
    assert result.baseline is not None
    fed, central = result.metrics["auc"], result.baseline["auc"]
    assert fed >= 0.98 and abs(fed - central) <= 0.01, (fed, central)
    assert result.losses[-1] < result.losses[0]


def _plaintext_taylor(
    job: Any, xs: dict[str, np.ndarray], y: np.ndarray, train: np.ndarray
) -> tuple[dict[str, np.ndarray], list[float]]:
    """The same mini-batch Taylor-LR in plaintext, party by party."""
    p = job.hetero_lr
    w = {name: np.zeros(x.shape[1]) for name, x in xs.items()}
    pen = {name: np.ones(x.shape[1]) for name, x in xs.items()}
    pen["bank"][-1] = 0.0
    losses = []
    for epoch in range(p.epochs):
        rng = np.random.default_rng(derive_seed(job.seed, "hetero_lr/batches", epoch))
        order = train[rng.permutation(len(train))]
        lr = p.learning_rate / (1 + p.decay * epoch)
        total = 0.0
        for s in range(0, len(order), p.batch_size):
            rows = order[s : s + p.batch_size]
            z = sum(xs[n][rows] @ w[n] for n in xs)
            reg = sum(0.5 * p.l2 * float(np.sum((w[n] * pen[n]) ** 2)) for n in xs)
            total += float(np.sum(math.log(2) - 0.5 * (2 * y[rows] - 1) * z + z**2 / 8))
            total += len(rows) * reg
            d = 0.25 * z + 0.5 - y[rows]
            for n in xs:
                w[n] = w[n] - lr * (xs[n][rows].T @ d / len(rows) + p.l2 * pen[n] * w[n])
        losses.append(total / len(train))
    return w, losses


def _run(job: Any) -> tuple[dict[str, HeteroLrParty], Any, dict[str, VerticalPartyAgent]]:
    """One hetero-LR job through the runner; each party's trained role and the outcome."""
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    outcome = VerticalRunner(job, InProcessTransport(agents)).run()
    roles = {}
    for name, agent in agents.items():
        assert isinstance(agent.role, HeteroLrParty)
        roles[name] = agent.role
    return roles, outcome, agents


def test_paillier_equals_plaintext_taylor_lr_and_is_deterministic(
    breast_job: Callable[..., dict[str, Any]],
) -> None:
    job = parse_vertical_job(breast_job("paillier", epochs=2, batch_size=160))
    runs = []
    for _ in range(2):
        parties, outcome, agents = _run(job)
        losses, metrics = outcome.history["loss_per_epoch"], outcome.test
        runs.append(({n: p.weights.copy() for n, p in parties.items()}, losses, metrics))
    xs = {}
    for name, party in parties.items():
        xs[name] = party._x  # standardized by the party itself (+ intercept for the guest)
    guest = agents["bank"].aligned
    assert guest is not None and guest.labels is not None
    w, losses = _plaintext_taylor(job, xs, guest.labels, outcome.alignment.train)
    for name in xs:
        np.testing.assert_allclose(runs[0][0][name], w[name], rtol=0, atol=1e-8)
        assert np.array_equal(runs[0][0][name], runs[1][0][name])  # bit for bit
    np.testing.assert_allclose(runs[0][1], losses, rtol=0, atol=1e-8)
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]


def test_ckks_is_reproducible_up_to_ckks_noise(
    breast_job: Callable[..., dict[str, Any]],
) -> None:
    job = parse_vertical_job(breast_job("ckks", epochs=1))
    weights = []
    for _ in range(2):
        parties, _, _ = _run(job)
        weights.append(np.concatenate([p.weights for p in parties.values()]))
    # CKKS encryption noise is fresh each run, so bits differ; the models agree closely.
    np.testing.assert_allclose(weights[0], weights[1], rtol=0, atol=1e-4)
