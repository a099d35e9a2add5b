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
    assert "tree  10" in result.output  # per-tree progress, numbered as metrics.json
    doc = json.loads((out / "metrics.json").read_text())
    v, test, history = doc["vertical"], doc["final"]["global"], doc["history"]
    assert doc["job"]["kind"] == "vertical" and v["algorithm"] == "secureboost"
    assert v["he_scheme"] == "ckks" and v["alignment"]["aligned"] < 569
    fed, central = test["auc"], doc["baseline"]["auc"]
    assert fed >= 0.97 and abs(fed - central) <= 0.01, (fed, central)
    assert {"auc", "ks", "accuracy", "f1"} <= set(test) <= set(v["train"])
    assert v["train"]["auc"] >= fed - 0.05 and v["baseline_train"]["auc"] > 0.99
    assert v["n_trees"] == 10 and len([h["duration_s"] for h in history]) == 10
    assert len(history) == 10 and [h["valid_loss"] for h in history] == [None] * 10
    # Without a validation split the guest's routed prediction on the training rows gives
    # exactly the boosting margin: its log loss is the last tree's training loss.
    assert v["train"]["loss"] == pytest.approx(history[-1]["train_loss"], abs=1e-9)
    parts = {p.name for p in (out / "models").iterdir()}
    assert parts == {"bank.json", "provider.json"}
    provider = json.loads((out / "models" / "provider.json").read_text())
    assert set(provider) == {"format", "party", "role", "records", "features", "encoding"}
    assert provider["party"] == "provider" and provider["role"] == "host"
    html = (out / "report.html").read_text()
    assert "SecureBoost" in html and "data:image/png;base64," in html
