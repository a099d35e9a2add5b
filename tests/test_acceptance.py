"""The issue's accuracy targets, measured on the shipped example jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

import fedsilo
from fedsilo.config import load_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_hospitals_dirichlet_logreg_reaches_99_percent_of_centralized() -> None:
    job = load_job(EXAMPLES / "hospitals_breast_cancer.toml")
    assert job.rounds == 20 and job.data.alpha == 0.5 and job.model.name == "logreg"
    result = fedsilo.simulate(job, baseline=True)
    assert result.baseline is not None
    ratio = result.final_global["accuracy"] / result.baseline["accuracy"]
    assert ratio >= 0.99, (result.final_global, result.baseline)


@pytest.mark.slow
def test_mnist_three_orgs_mlp_reaches_98_percent_of_centralized_within_20_rounds() -> None:
    job = load_job(EXAMPLES / "mnist_3orgs.toml").with_overrides(rounds=20)
    result = fedsilo.simulate(job, baseline=True)
    assert result.baseline is not None
    best = max(r.global_metrics["accuracy"] for r in result.history)
    assert best / result.baseline["accuracy"] >= 0.98, (best, result.baseline)
    assert result.final_global["accuracy"] / result.baseline["accuracy"] >= 0.98


@pytest.mark.slow
def test_banks_csv_example_trains_from_generated_files(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", EXAMPLES / "banks_csv/make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.main(tmp_path / "data")
    job_text = (EXAMPLES / "banks_csv/job.toml").read_text()
    (tmp_path / "job.toml").write_text(job_text)
    assert len(paths) == 3
    result = fedsilo.simulate(tmp_path / "job.toml")
    assert set(result.final_parties) == {"bank-a", "bank-b", "bank-c"}
    assert result.final_global["accuracy"] > 0.85
