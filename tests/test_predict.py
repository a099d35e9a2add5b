"""Scoring new rows with a saved horizontal model: fedsilo.load_model and `fedsilo predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file
from typer.testing import CliRunner

import fedsilo
from fedsilo.cli import app
from fedsilo.errors import DataError, MissingValueError, ModelError, SchemaError
from fedsilo.simulation import load_simulated_data
from fedsilo.training import classification_metrics
from tests.conftest import bank_frame, small_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The hospitals example, run as written; its central test rows exported as CSV."""
    root = tmp_path_factory.mktemp("hospitals")
    job = fedsilo.load_job(EXAMPLES / "hospitals_breast_cancer.toml")
    fedsilo.simulate(job).save(root / "run")
    test = load_simulated_data(job).test
    assert test is not None and test.table is not None
    test.table.to_csv(root / "test.csv", index=False)
    return root / "run", root / "test.csv"


def test_predict_on_the_central_test_rows_reproduces_the_reported_metrics(
    hospitals: tuple[Path, Path], tmp_path: Path
) -> None:
    run, test_csv = hospitals
    out = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(run), str(test_csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(out)
    truth = pd.read_csv(test_csv)["label"]
    classes = ["benign", "malignant"]
    assert list(predictions.columns) == ["prediction", "proba_benign", "proba_malignant"]
    y = np.array([classes.index(v) for v in truth])
    metrics = classification_metrics(y, predictions[["proba_benign", "proba_malignant"]].to_numpy())
    reported = json.loads((run / "metrics.json").read_text())["final"]["global"]
    assert metrics["accuracy"] == reported["accuracy"]
    assert metrics["auc"] == reported["auc"]
    assert metrics == reported  # loss, precision, recall and F1 too, bit for bit
    assert (predictions["prediction"] == np.array(classes)[y]).mean() == reported["accuracy"]


def test_load_model_scores_a_dataframe_like_the_cli(hospitals: tuple[Path, Path]) -> None:
    run, test_csv = hospitals
    model = fedsilo.load_model(run)
    rows = pd.read_csv(test_csv)
    proba = model.predict_proba(rows)
    assert proba.shape == (len(rows), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(model.predict(rows)) == list(np.array(model.classes)[proba.argmax(axis=1)])
    # the columns may come in any order; the label column is ignored
    shuffled = rows[list(reversed(rows.columns))].drop(columns=["label"])
    assert np.array_equal(model.predict_proba(shuffled), proba)
    assert np.array_equal(fedsilo.load_model(run / "model.safetensors").predict_proba(rows), proba)


def test_a_file_without_a_model_column_exits_2_naming_the_column(
    hospitals: tuple[Path, Path], tmp_path: Path
) -> None:
    run, test_csv = hospitals
    bad = tmp_path / "bad.csv"
    pd.read_csv(test_csv).drop(columns=["mean radius"]).to_csv(bad, index=False)
    result = runner.invoke(app, ["predict", str(run), str(bad), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2
    assert "SchemaError" in result.output and "'mean radius'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "p.csv").exists()


def test_a_missing_input_file_exits_2_saying_so(
    hospitals: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = hospitals
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app, ["predict", str(run), str(tmp_path / "nope.csv"), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "cannot score" in result.output and "nope.csv" in result.output
    assert "no such file" in result.output and "job config" not in result.output
    assert not out.exists()


def test_text_in_a_number_column_names_column_and_row(
    hospitals: tuple[Path, Path], tmp_path: Path
) -> None:
    run, test_csv = hospitals
    rows = pd.read_csv(test_csv)
    rows["mean area"] = rows["mean area"].astype(object)
    rows.loc[6, "mean area"] = "large"
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    result = runner.invoke(app, ["predict", str(run), str(bad), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2
    assert "'mean area'" in result.output and "row 7" in result.output
    # the scored rows belong to no party of the job: the message says so
    assert "input column 'mean area' (" in result.output and "party '" not in result.output


# -- a file job with an id column, a category and missing values ----------------------------


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("banks")
    parties = []
    for i, name in enumerate(("bank-a", "bank-b")):
        bank_frame(80, i).to_csv(root / f"{name}.csv", index=False)
        parties.append({"name": name, "path": str(root / f"{name}.csv")})
    job = small_job(
        data={"label": "default", "id": "customer_id", "missing": "reject"}, parties=parties
    )
    del job["data"]["dataset"], job["data"]["num_parties"], job["data"]["partition"]
    fedsilo.simulate(job).save(root / "run")
    return root / "run"


def test_predictions_keep_the_declared_id_column_csv_and_parquet(
    bank_run: Path, tmp_path: Path
) -> None:
    new = bank_frame(12, 7).drop(columns=["default"])
    new.to_parquet(tmp_path / "new.parquet", index=False)
    out = tmp_path / "p.parquet"
    result = runner.invoke(
        app, ["predict", str(bank_run), str(tmp_path / "new.parquet"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert list(got.columns) == ["customer_id", "prediction", "proba_no", "proba_yes"]
    assert list(got["customer_id"]) == list(new["customer_id"])
    model = fedsilo.load_model(bank_run)
    assert model.id_column == "customer_id"
    assert np.array_equal(got[["proba_no", "proba_yes"]].to_numpy(), model.predict_proba(new))
    assert set(got["prediction"]) <= {"no", "yes"}


def test_scoring_refuses_without_the_declared_id_column(bank_run: Path) -> None:
    model = fedsilo.load_model(bank_run)
    rows = bank_frame(5, 8).drop(columns=["customer_id"])
    assert model.predict_proba(rows).shape == (5, 2)  # probabilities need no id
    with pytest.raises(SchemaError, match="id column 'customer_id'"):
        model.predictions(rows)


def test_an_unseen_category_names_column_value_and_row(bank_run: Path, tmp_path: Path) -> None:
    rows = bank_frame(10, 9)
    rows.loc[3, "region"] = "south"
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(
        app, ["predict", str(bank_run), str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 2
    assert "DataError" in result.output
    assert "'region'" in result.output and "'south'" in result.output and "row 4" in result.output
    assert "input column 'region'" in result.output and "party '" not in result.output
    with pytest.raises(DataError, match="row 4") as err:
        fedsilo.load_model(bank_run).predict(rows)
    assert str(err.value).startswith("input column 'region' has value 'south' (DataFrame, row 4)")


def test_a_missing_value_under_the_reject_policy_names_column_and_row(bank_run: Path) -> None:
    rows = bank_frame(10, 10)
    rows.loc[8, "income"] = np.nan
    with pytest.raises(MissingValueError, match=r"^input column 'income'.*row 9") as err:
        fedsilo.load_model(bank_run).predict(rows)
    # the policy came with the model: the fix is the rows, not a job to edit
    assert str(err.value).endswith(
        "Fill them in: the model was trained with that policy (a model trained with "
        'data.missing = "mean" or "constant" fills them itself).'
    )


# -- files that are not what they claim -------------------------------------------------------


def _meta(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads((fh.metadata() or {})["fedsilo"])
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    return meta, arrays


def test_a_model_file_with_inconsistent_metadata_is_refused(bank_run: Path, tmp_path: Path) -> None:
    meta, arrays = _meta(bank_run / "model.safetensors")
    forged = tmp_path / "model.safetensors"
    save_file(arrays, str(forged), {"fedsilo": json.dumps({**meta, "classes": ["no", "maybe"]})})
    with pytest.raises(ModelError, match=r"preprocess\.classes differ"):
        fedsilo.load_model(forged)
    save_file(arrays, str(forged), {"fedsilo": json.dumps({**meta, "pickle": "x"})})
    with pytest.raises(ModelError, match="pickle"):
        fedsilo.load_model(forged)
    save_file(arrays, str(forged))
    with pytest.raises(ModelError, match="not written by fedsilo"):
        fedsilo.load_model(forged)
    small = {k: v[..., :1] for k, v in arrays.items()}
    save_file(small, str(forged), {"fedsilo": json.dumps(meta)})
    with pytest.raises(ModelError, match="do not fit the saved model spec"):
        fedsilo.load_model(forged)


def test_a_vertical_run_or_an_empty_directory_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "vertical" / "models").mkdir(parents=True)
    with pytest.raises(ModelError, match="vertical run"):
        fedsilo.load_model(tmp_path / "vertical")
    deployed = tmp_path / "deployed-vertical"  # the server keeps metrics only
    deployed.mkdir()
    (deployed / "metrics.json").write_text(json.dumps({"job": {"kind": "vertical"}}))
    with pytest.raises(ModelError, match="vertical run"):
        fedsilo.load_model(deployed)
    with pytest.raises(ModelError, match=r"holds no model\.safetensors"):
        fedsilo.load_model(tmp_path)


def test_an_image_model_scores_arrays(tmp_path: Path) -> None:
    result = fedsilo.simulate(small_job(rounds=1, data={"dataset": "digits"}))
    result.save(tmp_path)
    model = fedsilo.load_model(tmp_path)
    images = np.random.default_rng(0).random((4, *model.meta.model_spec.input_shape))
    from fedsilo.training import predict_proba

    assert np.array_equal(model.predict_proba(images), predict_proba(result.model(), images))
    with pytest.raises(ModelError, match="images"):
        model.predict(pd.DataFrame({"a": [1.0]}))
