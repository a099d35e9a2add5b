"""End-to-end simulations: determinism, outputs, file data, errors that name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fedsilo
from fedsilo.errors import ConfigError, DataError, MissingValueError, SchemaError
from tests.conftest import small_job


def test_same_seed_gives_byte_identical_model(tmp_path: Path) -> None:
    raw = small_job(data={"dataset": "digits"}, model={"name": "mlp", "hidden": [16]})
    a = fedsilo.simulate(raw).save(tmp_path / "a")
    b = fedsilo.simulate(raw).save(tmp_path / "b")
    c = fedsilo.simulate({**raw, "seed": 4}).save(tmp_path / "c")
    assert a["model"].read_bytes() == b["model"].read_bytes()
    assert a["model"].read_bytes() != c["model"].read_bytes()


def test_outputs_hold_the_documented_keys(tmp_path: Path) -> None:
    result = fedsilo.simulate(small_job(), baseline=True)
    paths = result.save(tmp_path)
    metrics = json.loads(paths["metrics_json"].read_text())
    for key in ("loss", "accuracy", "precision", "recall", "f1", "auc"):
        assert metrics["final"]["global"][key] >= 0 or key == "loss"
        assert key in metrics["history"][0]["global"]
        assert key in metrics["baseline"]
        assert key in metrics["final"]["parties"]["party-1"]
    assert len(metrics["history"]) == 3
    assert set(metrics["data"]["parties"]) == {"party-1", "party-2", "party-3"}
    csv = pd.read_csv(paths["metrics_csv"])
    assert set(csv["scope"]) == {"global", "party", "baseline"}
    assert len(csv) == 3 * 4 + 1
    assert paths["report"].read_text().startswith("<!")
    assert result.final_global == metrics["final"]["global"]


def test_model_file_is_self_describing(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = fedsilo.simulate(small_job()).save(tmp_path)["model"]
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["fedsilo"])
        assert meta["model_spec"]["name"] == "logreg"
        assert meta["classes"] == ["benign", "malignant"]
        assert len(meta["preprocess"]["feature_names"]) == 30
        assert f.get_tensor("1.weight").shape == (2, 30)


def test_robust_aggregators_and_server_optimizers_compose() -> None:
    raw = small_job(
        rounds=4,
        data={"num_parties": 5},
        aggregation={
            "aggregator": "trimmed-mean",
            "trim_ratio": 0.2,
            "server_optimizer": "yogi",
            "server_learning_rate": 0.05,
        },
    )
    assert fedsilo.simulate(raw).final_global["accuracy"] > 0.9


def test_fedprox_runs_and_differs_from_fedavg() -> None:
    plain = fedsilo.simulate(small_job(rounds=2))
    prox = fedsilo.simulate(small_job(rounds=2, training={"proximal_mu": 1.0}))
    assert any((plain.params[k] != prox.params[k]).any() for k in plain.params)


def test_by_column_split_gives_one_party_per_value(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "x": np.linspace(-1, 1, 300),
            "region": np.repeat(["east", "north", "west"], 100),
            "y": np.tile([0, 1], 150),
        }
    )
    path = tmp_path / "all.csv"
    frame.to_csv(path, index=False)
    raw = {
        "rounds": 1,
        "data": {
            "path": str(path),
            "label": "y",
            "partition": "by-column",
            "column": "region",
            "test_fraction": 0.0,
        },
    }
    result = fedsilo.simulate(raw)
    assert set(result.final_parties) == {"east", "north", "west"}


# -- per-party files ---------------------------------------------------------------------------


def bank_files(tmp_path: Path, n: int = 240) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        income = rng.normal(50, 10, n)
        region = rng.choice(["north", "south"], n)
        y = ((income + (region == "north") * 5 + rng.normal(0, 3, n)) > 53).astype(int)
        frame = pd.DataFrame(
            {
                "id": np.arange(n) + i * n,
                "income": income,
                "region": region,
                "default": np.where(y == 1, "yes", "no"),
            }
        )
        path = tmp_path / f"bank_{i}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def file_job(paths: list[Path], **data: object) -> dict[str, object]:
    return {
        "rounds": 5,
        "data": {"label": "default", "id": "id", **data},
        "parties": [{"name": f"bank-{i}", "path": str(p)} for i, p in enumerate(paths)],
        "model": {"name": "logreg"},
        "training": {"learning_rate": 0.1},
    }


def test_per_party_csv_and_parquet_files_train(tmp_path: Path) -> None:
    paths = bank_files(tmp_path)
    parquet = paths[2].with_suffix(".parquet")
    pd.read_csv(paths[2]).to_parquet(parquet)
    result = fedsilo.simulate(file_job([paths[0], paths[1], parquet]))
    assert result.setup.plan is not None
    assert result.setup.plan.feature_names[:1] == ("income",)
    assert result.final_global["accuracy"] > 0.85  # merged federated evaluation (no test file)


def test_party_with_mismatched_column_type_fails_naming_party_and_column(tmp_path: Path) -> None:
    paths = bank_files(tmp_path)
    frame = pd.read_csv(paths[1])
    # a few text values: a category here, a number at the other parties
    frame["income"] = np.where(frame["income"] > frame["income"].median(), "high", "low")
    frame.to_csv(paths[1], index=False)
    with pytest.raises(SchemaError) as err:
        fedsilo.simulate(file_job(paths))
    assert "bank-1" in str(err.value) and "income" in str(err.value)


def test_missing_label_column_names_the_key(tmp_path: Path) -> None:
    paths = bank_files(tmp_path)
    with pytest.raises(DataError, match=r"(?s)bank-0.*'outcome'"):
        fedsilo.simulate(file_job(paths) | {"data": {"label": "outcome", "id": "id"}})


def test_nan_in_data_is_rejected_by_default_and_imputed_on_request(tmp_path: Path) -> None:
    paths = bank_files(tmp_path)
    frame = pd.read_csv(paths[0])
    frame.loc[[3, 8], "income"] = np.nan
    frame.to_csv(paths[0], index=False)
    with pytest.raises(MissingValueError) as err:
        fedsilo.simulate(file_job(paths))
    assert "bank-0" in str(err.value) and "income" in str(err.value)
    result = fedsilo.simulate(file_job(paths, missing="mean"))
    assert (
        result.setup.summary["bank-0"]["train_examples"]
        + result.setup.summary["bank-0"]["holdout_examples"]
        == 240
    )  # nothing dropped


def test_missing_party_file_names_party_and_path(tmp_path: Path) -> None:
    paths = bank_files(tmp_path)
    paths[2].unlink()
    with pytest.raises(DataError, match=r"bank-2.*bank_2.csv"):
        fedsilo.simulate(file_job(paths))


def test_builtin_with_label_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.label"):
        fedsilo.simulate(small_job(data={"label": "y"}))


def test_by_column_on_image_data_says_it_needs_a_table() -> None:
    raw = small_job(data={"dataset": "digits", "partition": "by-column", "column": "x"})
    with pytest.raises(ConfigError, match=r"by-column.*needs tabular data.*'digits'"):
        fedsilo.simulate(raw)
