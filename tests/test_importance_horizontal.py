"""Horizontal ``logreg``: standardized coefficients in metrics.json, report.html and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from fedsilo.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hospitals_breast_cancer.toml"


def test_logreg_importance_is_the_saved_models_standardized_coefficients(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--rounds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output

    doc = json.loads((out / "metrics.json").read_text())
    scope = doc["importance"]["global"]
    names = doc["data"]["feature_names"]
    assert scope["features"] == len(names) == 30 and list(scope["by_feature"]) == names
    weights = load_file(str(out / "model.safetensors"))
    (w,) = [v for k, v in weights.items() if k.endswith("weight")]
    expected = w[1].astype(np.float64) - w[0].astype(np.float64)  # log-odds of class 2 per sd
    got = np.array([scope["by_feature"][n]["coefficient"] for n in names])
    assert got == pytest.approx(expected, abs=1e-6)
    assert scope["total"]["coefficient"] == pytest.approx(np.abs(expected).sum(), rel=1e-6)
    top = names[int(np.argmax(np.abs(expected)))]
    assert "feature importance" in result.output and top in result.output
    html = (out / "report.html").read_text()
    assert "Feature importance" in html and top in html


def test_an_mlp_gets_permutation_importance_on_the_central_test_split(tmp_path: Path) -> None:
    """Shuffling the column the label depends on hurts; shuffling pure noise does not."""
    rng = np.random.default_rng(0)
    n = 600
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "blue"], size=n)  # a category: its one-hots move together
    label = np.where(signal > 0, "yes", "no")
    pd.DataFrame({"signal": signal, "noise": noise, "colour": colour, "y": label}).to_csv(
        tmp_path / "all.csv", index=False
    )
    job = tmp_path / "mlp.toml"
    job.write_text(
        'name = "perm"\nseed = 1\nrounds = 4\n[data]\npath = "all.csv"\nlabel = "y"\n'
        'num_parties = 2\ntest_fraction = 0.3\n[model]\nname = "mlp"\nhidden = [8]\n'
        "[training]\nlearning_rate = 0.1\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["simulate", str(job), "--out", str(out)])
    assert result.exit_code == 0, result.output

    scope = json.loads((out / "metrics.json").read_text())["importance"]["global"]
    by = scope["by_feature"]
    assert set(by) == {"signal", "noise", "colour"} and scope["features"] == 3
    assert by["signal"]["accuracy_drop"] > 0.2 and by["signal"]["loss_increase"] > 0.1
    assert abs(by["noise"]["accuracy_drop"]) < 0.05 and abs(by["colour"]["loss_increase"]) < 0.05
    assert "log loss +" in result.output and "signal" in result.output
    page = (out / "report.html").read_text()
    assert "Accuracy drop (permuted)" in page


def test_the_same_seed_gives_the_same_permutation_importance(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('name = "logreg"', 'name = "mlp"\nhidden = [4]')
    job = tmp_path / "mlp.toml"
    job.write_text(text)
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = CliRunner().invoke(app, ["simulate", str(job), "--rounds", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        docs.append(json.loads((out / "metrics.json").read_text())["importance"])
    assert docs[0] == docs[1] and len(docs[0]["global"]["by_feature"]) == 30
