"""SecureBoost as a vertical job: the example TOML through ``fedsilo simulate --baseline``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsilo.cli import app

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vertical_breast_cancer"


def test_cli_secureboost_example_matches_centralized_gbm(
    breast_files: tuple[Path, Path], tmp_path: Path
) -> None:
    guest, host = breast_files
    text = (EXAMPLE / "secureboost.toml").read_text()
    text = text.replace("data/breast_hetero_guest.csv", guest.as_posix())
    text = text.replace("data/breast_hetero_host.csv", host.as_posix())
    (tmp_path / "sb.toml").write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["simulate", str(tmp_path / "sb.toml"), "--baseline", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "SecureBoost" in result.output and "centralized GBM" in result.output
    assert "tree   9" in result.output  # per-tree progress
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["kind"] == "vertical" and doc["algorithm"] == "secureboost"
    assert doc["he_scheme"] == "ckks" and doc["alignment"]["aligned"] < 569
    fed, central = doc["test"]["auc"], doc["baseline"]["auc"]
    assert fed >= 0.97 and abs(fed - central) <= 0.01, (fed, central)
    assert {"auc", "ks", "accuracy", "f1"} <= set(doc["test"]) <= set(doc["train"])
    assert doc["train"]["auc"] >= fed - 0.05 and doc["baseline_train"]["auc"] > 0.99
    assert doc["n_trees"] == 10 and len(doc["seconds_per_tree"]) == 10
    assert len(doc["train_loss_per_tree"]) == 10 and doc["valid_loss_per_tree"] == []
    # Without a validation split the guest's routed prediction on the training rows gives
    # exactly the boosting margin: its log loss is the last tree's training loss.
    assert doc["train"]["log_loss"] == pytest.approx(doc["train_loss_per_tree"][-1], abs=1e-9)
    parts = {p.name for p in (out / "models").iterdir()}
    assert parts == {"bank.json", "provider.json"}
    provider = json.loads((out / "models" / "provider.json").read_text())
    assert set(provider) == {"party", "records", "features"} and provider["party"] == "provider"
    assert "SecureBoost" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "SecureBoost" in html and "data:image/png;base64," in html
