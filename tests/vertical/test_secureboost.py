"""SecureBoost: plaintext reference vs scikit-learn, federated == reference, who sees what.

Federated runs go through the one vertical path (PSI, VerticalRunner, the parties' agents);
the plaintext reference is trained on the runner's own training rows and compared on its
held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedsilo.privacy.he import HeScheme, load_public
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import serve
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.bodies import SbStep
from fedsilo.vertical.config import VerticalJobConfig, parse_vertical_job
from fedsilo.vertical.data import PartyTable
from fedsilo.vertical.runner import VerticalOutcome, VerticalRunner
from fedsilo.vertical.sb_role import SecureBoostRole
from fedsilo.vertical.secureboost import (
    PlainModel,
    SecureBoostHost,
    Tree,
    TreeParams,
    split_rows,
    train_plain,
)
from fedsilo.vertical.secureboost.relay import unpack

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "default_credit"


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    x, y = load_breast_cancer(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=0.2, random_state=0, stratify=y))


class Recorder:
    """Wraps a handler and keeps every message it receives."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.received: list[Message] = []

    def handle(self, data: bytes) -> bytes:
        self.received.append(Message.decode(data))
        return bytes(self.inner.handle(data))


@dataclass
class Run:
    """A SecureBoost job run by the vertical runner over recorded in-process agents."""

    job: VerticalJobConfig
    agents: dict[str, VerticalPartyAgent]
    recorders: dict[str, Recorder]
    outcome: VerticalOutcome

    def aligned(self, name: str) -> PartyTable:
        table = self.agents[name].aligned
        assert table is not None
        return table

    def role(self, name: str) -> SecureBoostRole:
        role = self.agents[name].role
        assert isinstance(role, SecureBoostRole)
        return role

    @property
    def trees(self) -> list[Tree]:
        return [Tree.from_json(t) for t in self.role("bank").model()["trees"]]

    def reference(self) -> tuple[PlainModel, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The plaintext reference on the runner's training rows; guest/host test features."""
        train, test = self.outcome.alignment.train, self.outcome.alignment.test
        xg, xh = self.aligned("bank").features, self.aligned("provider").features
        y = self.aligned("bank").labels
        assert y is not None
        params = self.job.secureboost.params()
        ref = train_plain([xg[train], xh[train]], y[train], *split_rows(len(train), 0.0, 0), params)
        return ref, xg[test], xh[test], y[test], self.role("bank").scores[test]  # type: ignore[index]


def run_secureboost(
    guest: Path, host: Path, scheme: str, test_fraction: float = 0.2, **params: Any
) -> Run:
    job = parse_vertical_job(
        {
            "kind": "vertical",
            "name": "sb",
            "algorithm": "secureboost",
            "seed": 0,
            "test_fraction": test_fraction,
            "parties": [
                {"name": "bank", "path": str(guest), "id_column": "id", "label": "y"},
                {"name": "provider", "path": str(host), "id_column": "id"},
            ],
            "he": {"scheme": scheme, "key_bits": 1024},
            "secureboost": params,
        }
    )
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    recorders = {name: Recorder(agent) for name, agent in agents.items()}
    outcome = VerticalRunner(job, InProcessTransport(recorders)).run()
    return Run(job, agents, recorders, outcome)


def test_plain_reference_matches_sklearn(cancer: tuple[np.ndarray, ...]) -> None:
    xtr, xte, ytr, yte = cancer
    params = TreeParams(n_trees=20, max_depth=3, learning_rate=0.3, n_bins=32)
    train, valid = split_rows(len(ytr), 0.0, 0)
    ref = train_plain([xtr[:, :10], xtr[:, 10:]], ytr, train, valid, params)
    auc_ref = roc_auc_score(yte, ref.predict_proba([xte[:, :10], xte[:, 10:]]))
    hgb = HistGradientBoostingClassifier(
        max_iter=20,
        max_depth=3,
        learning_rate=0.3,
        max_bins=32,
        l2_regularization=1.0,
        min_samples_leaf=1,
        early_stopping=False,
    ).fit(xtr, ytr)
    auc_hgb = roc_auc_score(yte, hgb.predict_proba(xte)[:, 1])
    assert auc_ref > 0.97
    assert abs(auc_ref - auc_hgb) <= 0.01


def test_early_stopping_truncates_to_best(cancer: tuple[np.ndarray, ...]) -> None:
    xtr, _, ytr, _ = cancer
    params = TreeParams(
        n_trees=60,
        max_depth=3,
        learning_rate=0.5,
        validation_fraction=0.3,
        early_stopping_rounds=3,
    )
    train, valid = split_rows(len(ytr), 0.3, 0)
    ref = train_plain([xtr[:, :10], xtr[:, 10:]], ytr, train, valid, params)
    out = ref.outcome
    assert len(out.valid_loss) < 60
    assert len(out.trees) == int(np.argmin(out.valid_loss)) + 1


@pytest.fixture(scope="module")
def paillier_run(breast_files: tuple[Path, Path]) -> Run:
    return run_secureboost(
        *breast_files, "paillier", n_trees=2, max_depth=3, learning_rate=0.3, n_bins=32
    )


def test_paillier_equals_plain_reference(paillier_run: Run, tmp_path: Path) -> None:
    ref, xg_test, xh_test, y_test, proba = paillier_run.reference()
    fed_trees = paillier_run.trees
    assert [t.structure() for t in fed_trees] == [t.structure() for t in ref.outcome.trees]
    for fed, plain in zip(fed_trees, ref.outcome.trees, strict=True):
        np.testing.assert_allclose(fed.weight, plain.weight, atol=1e-9)
    np.testing.assert_allclose(proba, ref.predict_proba([xg_test, xh_test]), atol=1e-9)
    assert (
        abs(
            roc_auc_score(y_test, proba)
            - roc_auc_score(y_test, ref.predict_proba([xg_test, xh_test]))
        )
        <= 0.01
    )
    assert paillier_run.outcome.test["auc"] == pytest.approx(roc_auc_score(y_test, proba))
    guest_path = paillier_run.role("bank").save(tmp_path / "bank.json")
    host_path = paillier_run.role("provider").save(tmp_path / "provider.json")
    assert "threshold" not in guest_path.read_text().split('"records"')[0]
    host_json = host_path.read_text()
    assert '"threshold"' in host_json and "base_score" not in host_json


def test_what_each_role_receives(paillier_run: Run) -> None:
    train = paillier_run.outcome.alignment.train
    y_train = paillier_run.aligned("bank").labels[train]  # type: ignore[index]
    training_kinds = {
        TaskKind.SB_SETUP,
        TaskKind.SB_GRADIENTS,
        TaskKind.SB_HISTOGRAMS,
        TaskKind.SB_SPLIT,
        TaskKind.SB_ROUTE,
    }
    host_msgs = [
        m
        for m in paillier_run.recorders["provider"].received
        if m.kind in training_kinds and m.body.get("phase") != "predict"
    ]
    assert all(m.job_id == paillier_run.job.name for m in host_msgs)  # the job's real id
    kinds = {m.kind for m in host_msgs}
    assert kinds == training_kinds - {TaskKind.SB_ROUTE}  # no validation split: no routing
    public = None
    for m in host_msgs:
        for name, arr in m.arrays.items():
            # never a float array: no labels, no plaintext g/h, no guest features
            assert arr.dtype.kind in "iu", (m.kind, name, arr.dtype)
            if name == "public_key":
                public = load_public(HeScheme.PAILLIER, arr.tobytes())
            elif name == "gh":
                assert public is not None
                assert len(public.deserialize_vector(arr.tobytes())) == len(y_train)
            else:
                assert name.startswith(("rows_", "train_rows")), name
                assert arr.dtype == np.int64 and arr.max() < len(y_train)
        flat = repr(m.body)
        assert "label" not in flat and "threshold" not in flat
        for key in m.body:
            assert key in {"scheme", "n_bins", "n_nodes", "splits"}, key
    steps = [m for m in paillier_run.recorders["bank"].received if m.kind is TaskKind.SB_STEP]
    host_values = set(np.round(paillier_run.aligned("provider").features, 6).ravel().tolist())
    relayed = 0
    for outer in steps:
        if outer.body.get("phase") == "predict":
            continue
        replies = unpack(SbStep.of(outer).replies, outer, sender=lambda party: party)
        assert set(replies) <= {"provider"}
        for inner in replies.values():
            relayed += 1
            assert inner.sender == "provider"
            for name, part in inner.arrays.items():
                assert part.dtype.kind in "u", (inner.kind, name)  # ciphertexts or 0/1 bits
                if name.startswith("left_"):
                    assert set(np.unique(part).tolist()) <= {0, 1}
            body_numbers = [v for v in inner.body.get("records", [])]  # type: ignore[union-attr]
            assert all(isinstance(v, int) for v in body_numbers)
            assert not host_values & {float(v) for v in body_numbers if v > 1000}
            assert set(inner.body) <= {"n_features", "records"}
    assert relayed > 0


def test_ckks_close_to_reference(breast_files: tuple[Path, Path]) -> None:
    run = run_secureboost(
        *breast_files, "ckks", n_trees=1, max_depth=2, learning_rate=0.3, n_bins=32
    )
    ref, xg_test, xh_test, y_test, proba = run.reference()
    # clear gains on this data: the same splits, leaf weights within CKKS noise
    assert [t.structure() for t in run.trees] == [t.structure() for t in ref.outcome.trees]
    for fed, plain in zip(run.trees, ref.outcome.trees, strict=True):
        np.testing.assert_allclose(fed.weight, plain.weight, atol=1e-6)
    auc_ref = roc_auc_score(y_test, ref.predict_proba([xg_test, xh_test]))
    assert abs(roc_auc_score(y_test, proba) - auc_ref) <= 0.01


def test_host_answers_malformed_tasks_with_errors() -> None:
    host = serve("h", SecureBoostHost("h", np.random.default_rng(0).normal(size=(20, 3))).routes)
    reply = Message.decode(host(b"garbage"))
    assert reply.error and "malformed" in reply.error
    early = Message(TaskKind.SB_HISTOGRAMS, "j", 0, "guest", {"n_nodes": 1}).encode()
    reply = Message.decode(host(early))
    assert reply.error and "before sb_setup" in reply.error


@pytest.mark.skipif(
    not DATA.exists(), reason=f"default_credit data not present at {DATA} (../shared/data)"
)
def test_default_credit_subset_matches_reference(tmp_path: Path) -> None:
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    ids = guest["id"].to_numpy()[np.random.default_rng(0).permutation(len(guest))[:2500]]
    guest[guest["id"].isin(ids)].to_csv(tmp_path / "guest.csv", index=False)
    host[host["id"].isin(ids)].to_csv(tmp_path / "host.csv", index=False)
    run = run_secureboost(
        tmp_path / "guest.csv",
        tmp_path / "host.csv",
        "paillier",
        test_fraction=0.4,  # 1500 training rows, 1000 held out
        n_trees=2,
        max_depth=3,
        learning_rate=0.3,
        n_bins=32,
    )
    assert len(run.outcome.alignment.train) == 1500
    ref, xg_test, xh_test, y_test, proba = run.reference()
    auc = roc_auc_score(y_test, proba)
    auc_ref = roc_auc_score(y_test, ref.predict_proba([xg_test, xh_test]))
    assert abs(auc - auc_ref) <= 0.01
    assert auc > 0.7
