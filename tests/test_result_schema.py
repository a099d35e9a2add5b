"""One result schema: every training kind's metrics.json shares its core (fedsilo.result_doc)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

import fedsilo
from fedsilo.result_doc import SAVE_KEYS, finite, write_json
from tests.vertical.conftest import _make_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def headline(metrics_json: Path) -> tuple[str, float, float]:
    """(job.kind, final.global.auc, baseline.auc): the same keys for every training kind."""
    doc = json.loads(metrics_json.read_text())
    assert doc["fedsilo_version"] == fedsilo.__version__
    assert {"name", "kind", "seed", "config"} <= set(doc["job"])
    assert {"global", "parties"} <= set(doc["final"]) and isinstance(doc["history"], list)
    return doc["job"]["kind"], doc["final"]["global"]["auc"], doc["baseline"]["auc"]


@pytest.mark.slow
def test_horizontal_hetero_lr_and_secureboost_share_the_core(tmp_path: Path) -> None:
    # The vertical examples as shipped, with their data written beside the copied job files.
    for name in ("job.toml", "secureboost.toml"):
        shutil.copy(EXAMPLES / "vertical_breast_cancer" / name, tmp_path / name)
    _make_data().write(tmp_path / "data")
    runs = {
        "horizontal": fedsilo.simulate(
            EXAMPLES / "hospitals_breast_cancer.toml", rounds=3, baseline=True
        ),
        "hetero_lr": fedsilo.simulate(str(tmp_path / "job.toml"), rounds=2, baseline=True),
        "secureboost": fedsilo.simulate(tmp_path / "secureboost.toml", rounds=3, baseline=True),
    }
    seen: dict[str, tuple[str, float, float]] = {}
    for name, result in runs.items():
        paths = result.save(tmp_path / name)
        assert set(paths) == set(SAVE_KEYS), name
        seen[name] = headline(paths["metrics_json"])
    kinds = {name: kind for name, (kind, _, _) in seen.items()}
    assert kinds == {"horizontal": "horizontal", "hetero_lr": "vertical", "secureboost": "vertical"}
    for name, (_, auc, baseline_auc) in seen.items():
        assert 0.9 < auc <= 1.0 and 0.9 < baseline_auc <= 1.0, (name, auc, baseline_auc)
    # --rounds / rounds= reached the vertical jobs: 2 epochs, 3 trees.
    lr = json.loads((tmp_path / "hetero_lr" / "metrics.json").read_text())
    sb = json.loads((tmp_path / "secureboost" / "metrics.json").read_text())
    assert [h["epoch"] for h in lr["history"]] == [1, 2] and lr["job"]["rounds"] == 2
    assert [h["tree"] for h in sb["history"]] == [1, 2, 3] and sb["vertical"]["n_trees"] == 3
    # One vocabulary: `loss` is the log loss in every kind; no `log_loss`.
    for name in runs:
        text = (tmp_path / name / "metrics.json").read_text()
        assert "log_loss" not in text and "NaN" not in text
        assert "loss" in json.loads(text)["final"]["global"], name


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "final": {"global": {"loss": math.nan, "auc": 0.9}, "parties": {"a": {"f1": math.inf}}},
        "history": [{"round": 1, "train_loss": -math.inf}],
    }
    write_json(tmp_path / "m.json", doc)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["final"]["global"] == {"loss": None, "auc": 0.9}
    assert back["final"]["parties"]["a"]["f1"] is None
    assert back["history"][0]["train_loss"] is None
    assert finite((1.5, [math.nan])) == [1.5, [None]]
