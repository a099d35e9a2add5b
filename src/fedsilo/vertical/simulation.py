"""Run a vertical job with every party in this process: the deployment's code, in process.

``simulate_vertical(job)`` builds one :class:`~fedsilo.vertical.agent.VerticalPartyAgent` per
party (each reads only its own file), connects them with
:class:`~fedsilo.runtime.transport.InProcessTransport` (every message is encoded exactly as
over the network) and runs the same :class:`~fedsilo.vertical.runner.VerticalRunner` the
deployed server runs: PSI relayed through the coordinator, hetero LR or SecureBoost, held-out
metrics. ``--baseline`` additionally trains a centralized model on the joined aligned rows,
and the same model on the guest's columns alone (what the guest has without the hosts),
(simulation only: no real deployment has the joined table): scikit-learn's
``LogisticRegression`` for hetero LR, ``HistGradientBoostingClassifier`` for SecureBoost
(:func:`gbm_baseline` says why that one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedsilo.data.tabular import check_frame_parties
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig
from fedsilo.vertical.data import AlignedData, PartyTable, check_headers
from fedsilo.vertical.importance import entry
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.result import VerticalResult
from fedsilo.vertical.runner import EpochCallback, StepCallback, TreeCallback, VerticalRunner
from fedsilo.vertical.secureboost import TreeParams

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier


def _columns(job: VerticalJobConfig, data: AlignedData, guest_only: bool) -> np.ndarray:
    """The joined aligned rows: every party's columns, or the guest's alone."""
    parties = [job.guest] if guest_only else job.parties
    return np.hstack([data.parties[p.name].features for p in parties])


def centralized_baseline(
    job: VerticalJobConfig, data: AlignedData, *, split: str = "test", guest_only: bool = False
) -> dict[str, float]:
    """scikit-learn LogisticRegression on the joined aligned rows, same standardization/L2.

    Metrics on the held-out rows (``split="test"``) or on the training rows (``"train"``);
    ``guest_only``: the guest's columns alone (what it could train without the hosts).
    """
    from sklearn.linear_model import LogisticRegression

    x = _columns(job, data, guest_only)
    labels = data.parties[job.guest.name].labels
    assert labels is not None
    train, test = data.train, data.test
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    xs = (x - mean) / std
    l2 = job.hetero_lr.l2
    c = 1.0 / (l2 * len(train)) if l2 > 0 else 1e6
    model = LogisticRegression(C=c, max_iter=2000).fit(xs[train], labels[train])
    rows = test if split == "test" else train
    return binary_metrics(labels[rows], model.predict_proba(xs[rows])[:, 1])


def centralized_gbm(params: TreeParams) -> HistGradientBoostingClassifier:
    """scikit-learn's model closest to SecureBoost, with the same trees, depth, rate, bins, λ.

    ``HistGradientBoostingClassifier`` rather than ``GradientBoostingClassifier`` because its
    algorithm is SecureBoost's: features are bucketed into quantile bins (``max_bins =
    n_bins``) and split candidates are bin edges; trees are fit to the logistic loss's gradient
    *and* hessian with the XGBoost gain and Newton leaf values ``-G / (H + lambda)``
    (``l2_regularization = reg_lambda``); depth-limited trees (``max_depth``, no leaf-count
    cap), ``learning_rate`` shrinkage, and the log-odds of the training prior as the base
    score. ``GradientBoostingClassifier`` splits on exact values with a first-order (Friedman
    MSE) criterion. No early stopping and ``min_samples_leaf=1`` (ours limits leaves by hessian
    weight, ``min_child_weight``, not by row count). The one baseline of the CLI, the tests and
    ``bench/``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=params.n_trees,
        max_depth=params.max_depth,
        max_leaf_nodes=None,
        learning_rate=params.learning_rate,
        max_bins=min(params.n_bins, 255),
        l2_regularization=params.reg_lambda,
        min_samples_leaf=1,
        early_stopping=False,
        random_state=0,
    )


def gbm_baseline(
    job: VerticalJobConfig, data: AlignedData, *, split: str = "test", guest_only: bool = False
) -> dict[str, float]:
    """:func:`centralized_gbm` trained on the joined aligned rows (or the guest's columns
    alone), scored on ``split``."""
    x = _columns(job, data, guest_only)
    labels = data.parties[job.guest.name].labels
    assert labels is not None
    model = centralized_gbm(job.secureboost.params()).fit(x[data.train], labels[data.train])
    rows = data.test if split == "test" else data.train
    return binary_metrics(labels[rows], model.predict_proba(x[rows])[:, 1])


def simulate_vertical(
    job: VerticalJobConfig,
    *,
    baseline: bool = False,
    on_epoch: EpochCallback | None = None,
    on_tree: TreeCallback | None = None,
    on_psi_step: StepCallback | None = None,
    frames: Mapping[str, object] | None = None,
) -> VerticalResult:
    """Run ``job`` with every party in this process; the result holds every party's part.

    ``frames`` (party name -> DataFrame) give parties' rows instead of their files.
    """
    started = time.monotonic()
    frames = dict(frames or {})
    check_frame_parties(frames, [p.name for p in job.parties], job=job.name)
    check_headers(job, skip=frames)
    agents = {p.name: VerticalPartyAgent.from_config(p, frames.get(p.name)) for p in job.parties}
    runner = VerticalRunner(
        job,
        InProcessTransport(agents),
        on_epoch=on_epoch,
        on_tree=on_tree,
        on_psi_step=on_psi_step,
    )
    outcome = runner.run()
    guest = agents[job.guest.name]
    # The simulation's outputs are the guest's: it sees its own features by name; each host's
    # appear as that host allowed (its share_feature_names), by name or as its total.
    outcome.importance[guest.name] = entry("guest", guest.importance(named=True))
    base = base_train = guest_only = None
    if baseline:
        joined = aligned_data(agents, outcome.alignment.train, outcome.alignment.test)
        fit = (
            gbm_baseline if job.algorithm is VerticalAlgorithm.SECUREBOOST else centralized_baseline
        )
        base, base_train = fit(job, joined), fit(job, joined, split="train")
        guest_only = fit(job, joined, guest_only=True)
    writers = {name: (agent.model_suffix(), _writer(agent)) for name, agent in agents.items()}
    return VerticalResult(
        job,
        outcome,
        base,
        base_train,
        time.monotonic() - started,
        model_writers=writers,
        heldout_scores=guest.heldout_scores(outcome.alignment.test),
        guest_only=guest_only,
    )


def _writer(agent: VerticalPartyAgent) -> Callable[[str, Path], Path]:
    def write(_name: str, path: Path) -> Path:
        return agent.save_model(path)

    return write


def aligned_data(
    agents: Mapping[str, VerticalPartyAgent], train: np.ndarray, test: np.ndarray
) -> AlignedData:
    """In-process agents' aligned tables side by side (baselines and tests only)."""
    tables: dict[str, PartyTable] = {}
    for name, agent in agents.items():
        assert agent.aligned is not None
        tables[name] = agent.aligned
    return AlignedData(tables, train, test, {n: len(t.ids) for n, t in tables.items()})
