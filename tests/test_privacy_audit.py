"""`fedsilo privacy audit`: canaries planted at one party, one run, the membership test.

Small runs (digits, a few rounds, tens of canaries, one torch thread) that check the
pipeline end to end; the bound's arithmetic is tested in tests/privacy/test_one_run.py and
the acceptance-sized figures come from bench/privacy_audit.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.config import parse_job
from fedsilo.errors import ConfigError
from fedsilo.privacy.one_run import audit_scores
from fedsilo.privacy_audit import (
    AuditConfig,
    accountant_epsilon,
    plant_canaries,
    run_privacy_audit,
)
from fedsilo.simulation import load_simulated_data
from fedsilo.training import predict_proba
from tests.conftest import small_job

CANARIES = 60


def digits_job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "audit",
        "rounds": 3,
        "data": {"dataset": "digits", "num_parties": 3, "partition": "iid"},
        "model": {"name": "mlp", "hidden": [64]},
        "training": {"epochs": 4, "batch_size": 32, "learning_rate": 0.2},
    }
    for key, value in overrides.items():
        job[key] = {**job[key], **value} if isinstance(job.get(key), dict) else value
    return small_job(**job)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def memorizing_job() -> dict[str, Any]:
    """Long enough local training for the MLP to fit its wrong-label canaries (~5 s)."""
    return digits_job(
        rounds=8, model={"hidden": [128]}, training={"epochs": 8, "learning_rate": 0.3}
    )


@pytest.fixture(scope="module")
def no_dp() -> Any:
    return run_privacy_audit(memorizing_job(), AuditConfig(canaries=CANARIES))


def test_canaries_come_out_of_the_party_with_wrong_labels() -> None:
    job = parse_job(digits_job(), source="test")
    sim = load_simulated_data(job)
    planted, canaries = plant_canaries(job, sim, AuditConfig(canaries=CANARIES))
    party = canaries.party
    assert party == "party-1"
    before, after = sim.parties[party], planted.parties[party]
    assert after.num_rows == before.num_rows - CANARIES
    assert all(planted.parties[p] is sim.parties[p] for p in ("party-2", "party-3"))
    assert before.images is not None and after.images is not None
    # every canary is one of the party's images, no longer among its own rows, relabelled
    rows = {img.tobytes(): int(y) for img, y in zip(before.images, before.labels, strict=True)}
    kept = {img.tobytes() for img in after.images}
    for img, y in zip(canaries.rows.images, canaries.rows.labels, strict=True):
        assert img.tobytes() in rows and img.tobytes() not in kept
        assert int(y) != rows[img.tobytes()]
    included = planted.canaries[party]
    assert included.num_rows == int(canaries.included.sum())
    assert 0 < included.num_rows < CANARIES


def test_the_audit_seed_fixes_the_canaries_and_coins() -> None:
    job = parse_job(digits_job(), source="test")
    sim = load_simulated_data(job)
    a = plant_canaries(job, sim, AuditConfig(canaries=CANARIES))[1]
    b = plant_canaries(job, sim, AuditConfig(canaries=CANARIES))[1]
    c = plant_canaries(job, sim, AuditConfig(canaries=CANARIES, seed=7))[1]
    assert np.array_equal(a.included, b.included)
    assert a.rows.images is not None and b.rows.images is not None and c.rows.images is not None
    assert np.array_equal(a.rows.images, b.rows.images)
    assert not np.array_equal(a.included, c.included)


def test_included_canaries_train_and_are_never_held_out(no_dp: Any) -> None:
    result, found = no_dp
    job = parse_job(memorizing_job(), source="test")
    base = load_simulated_data(job).parties["party-1"].num_rows - CANARIES
    holdout = min(max(1, round(base * job.data.holdout_fraction)), base - 1)
    summary = result.setup.summary["party-1"]
    assert summary["holdout_examples"] == holdout
    assert summary["train_examples"] == base - holdout + int(found.included.sum())


def test_scores_are_the_models_log_probability_of_the_wrong_label(no_dp: Any) -> None:
    result, found = no_dp
    job = parse_job(memorizing_job(), source="test")
    _, canaries = plant_canaries(job, load_simulated_data(job), AuditConfig(canaries=CANARIES))
    proba = predict_proba(result.model(), canaries.rows.images)
    expected = np.log(proba[np.arange(CANARIES), canaries.rows.labels])
    assert np.allclose(found.scores, expected, atol=1e-6)


def test_without_dp_the_attack_beats_chance_and_the_report_says_so(
    no_dp: Any, tmp_path: Path
) -> None:
    result, found = no_dp
    assert found.test.auc > 0.7 and found.test.epsilon_lower_bound > 0
    assert math.isinf(found.accountant_epsilon) and found.consistent
    metrics = json.loads(result.save(tmp_path)["metrics_json"].read_text())
    audit = metrics["privacy_audit"]
    # what was written is reproducible from the written scores and coins
    again = audit_scores(
        audit["canary_scores"], audit["canary_included"], delta=audit["delta"]
    ).to_json()
    assert {k: audit[k] for k in again} == again
    assert audit["accountant_epsilon"] is None and audit["party"] == "party-1"
    html = (tmp_path / "report.html").read_text()
    assert "id='privacy-audit'" in html and f"{found.test.auc:.3f}" in html


def test_with_record_dp_the_bound_stays_below_the_accountants_epsilon() -> None:
    job = digits_job(
        rounds=2,
        training={"epochs": 1},
        privacy={
            "delta": 1e-5,
            "record_dp": {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0},
        },
    )
    result, found = run_privacy_audit(job, AuditConfig(canaries=CANARIES))
    reported = result.history[-1].privacy["parties"]["party-1"]["epsilon"]
    assert found.accountant_epsilon == reported and 0 < reported < 10
    assert found.test.delta == 1e-5
    assert found.test.epsilon_lower_bound <= found.accountant_epsilon


def test_too_many_canaries_or_an_unknown_party_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"party 'party-1' has \d+ rows.*at most \d+ canaries"):
        run_privacy_audit(digits_job(), AuditConfig(canaries=2000))
    with pytest.raises(ConfigError, match="party 'bank-z' is not in job 'audit'"):
        run_privacy_audit(digits_job(), AuditConfig(party="bank-z"))
    with pytest.raises(ConfigError, match="at least 20 canaries"):
        AuditConfig(canaries=5)


def test_cli_prints_the_audit_and_writes_the_report(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "cli-audit"\nrounds = 5\n[data]\ndataset = "digits"\n[model]\nname = "mlp"\n'
        "hidden = [32]\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["privacy", "audit", str(job), "--out", str(out), "--canaries", "20", "--rounds", "1"],
    )
    assert result.exit_code == 0, result.output
    for text in ("canary AUC", "TPR at 1% FPR", "epsilon lower bound", "accountant's epsilon"):
        assert text in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["privacy_audit"]["canaries"] == 20
    assert "Empirical privacy audit" in (out / "report.html").read_text()


def test_cli_refuses_a_vertical_job(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    job = root / "examples" / "vertical_breast_cancer" / "job.toml"
    result = CliRunner().invoke(app, ["privacy", "audit", str(job)])
    assert result.exit_code == 2
    assert "vertical" in result.output


def test_the_accountants_epsilon_is_the_partys_own_or_the_client_level_one() -> None:
    def result(privacy: dict[str, Any]) -> Any:
        return SimpleNamespace(history=[SimpleNamespace(privacy=privacy)])

    record = {
        "level": "record",
        "epsilon": 5.0,
        "delta": 1e-5,
        "parties": {"a": {"epsilon": 2.0}, "b": {"epsilon": 5.0}},
    }
    assert accountant_epsilon(result(record), "a") == (2.0, 1e-5)
    client = {"level": "client", "epsilon": 3.0, "delta": 1e-6}
    assert accountant_epsilon(result(client), "a") == (3.0, 1e-6)
    assert accountant_epsilon(result({}), "a") == (math.inf, None)


def test_the_audit_catches_a_dp_sgd_that_drops_its_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adversary: a broken party trains without noise while its accountant claims
    noise multiplier 200 (epsilon below 0.1). The audit's bound exceeds that epsilon and
    the command warns and exits 1."""
    import fedsilo.runtime.party as party_module

    def noiseless(model: Any, x: Any, y: Any, cfg: Any, dp: Any, **_: Any) -> Any:
        return party_module.train_local(model, x, y, cfg, seed=0)

    monkeypatch.setattr(party_module, "train_local_dp", noiseless)
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "broken-dp"\nseed = 3\nrounds = 8\n[data]\ndataset = "digits"\nnum_parties = 3\n'
        'partition = "iid"\n[model]\nname = "mlp"\nhidden = [128]\n[training]\nepochs = 8\n'
        "batch_size = 32\nlearning_rate = 0.3\n[privacy]\ndelta = 1e-5\n[privacy.record_dp]\n"
        "enabled = true\nnoise_multiplier = 200.0\nmax_grad_norm = 1.0\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["privacy", "audit", str(job), "--out", str(out), "--canaries", str(CANARIES)]
    )
    assert result.exit_code == 1, result.output
    assert "exceeds the accountant's" in result.output
    audit = json.loads((out / "metrics.json").read_text())["privacy_audit"]
    assert audit["consistent"] is False
    assert audit["epsilon_lower_bound"] > 0.3 > 0.1 > audit["accountant_epsilon"] > 0
    assert "class='warn'" in (out / "report.html").read_text()


def test_tabular_canaries_go_through_the_shared_preprocessing() -> None:
    job = parse_job(small_job(rounds=1), source="test")  # breast-cancer, logreg, 3 parties
    sim = load_simulated_data(job)
    planted, canaries = plant_canaries(job, sim, AuditConfig(canaries=30, party="party-2"))
    before = sim.parties["party-2"].table
    assert before is not None and canaries.rows.table is not None
    original = before.loc[:, "label"].to_numpy()
    flipped = canaries.rows.table["label"].to_numpy()
    assert set(flipped) <= set(original) and planted.parties["party-2"].num_rows == len(before) - 30
    # each canary is one of the party's rows (same features) with the other label
    features = [c for c in before.columns if c != "label"]
    for _, row in canaries.rows.table.iterrows():
        match = (before[features] == row[features]).all(axis=1)
        assert match.sum() == 1 and original[match.to_numpy()][0] != row["label"]
    result, found = run_privacy_audit(job, AuditConfig(canaries=30, party="party-2"))
    assert found.party == "party-2" and len(found.scores) == 30
    base = len(before) - 30
    holdout = min(max(1, round(base * job.data.holdout_fraction)), base - 1)
    summary = result.setup.summary["party-2"]
    assert summary["train_examples"] == base - holdout + int(found.included.sum())
    assert np.all(found.scores <= 0) and np.all(np.isfinite(found.scores))
