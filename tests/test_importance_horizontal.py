"""Horizontal ``logreg``: standardized coefficients in metrics.json, report.html and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_an_mlp_has_no_coefficients(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('name = "logreg"', 'name = "mlp"\nhidden = [4]')
    job = tmp_path / "mlp.toml"
    job.write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["simulate", str(job), "--rounds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["importance"] is None
    assert "Feature importance" not in (out / "report.html").read_text()
