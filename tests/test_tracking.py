"""[tracking]: MLflow (local file store) and TensorBoard event files, read back with the real
libraries' own readers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

import fedsilo
from fedsilo.cli import app
from fedsilo.deploy.jobs import parse_deploy_job
from fedsilo.deploy.vertical_jobs import parse_deploy_vertical_job
from fedsilo.errors import ConfigError
from fedsilo.tracking import params, scalars
from tests.conftest import small_job

runner = CliRunner()


@pytest.fixture
def mlflow_reader(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MlflowClient over a store, as a person would open it (file store opted into)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return lambda uri: MlflowClient(tracking_uri=uri)


def _scalars(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir)
    events.Reload()
    return events


def _dp_job(tmp_path: Path, rounds: int = 3) -> dict[str, Any]:
    return small_job(
        rounds=rounds,
        data={"num_parties": 6, "min_partition_size": 5},
        selection={"fraction": 0.5, "min_parties": 2},
        privacy={
            "delta": 1e-5,
            "client_dp": {"enabled": True, "noise_multiplier": 0.5, "clip_norm": 0.5},
        },
        tracking={
            "mlflow": f"file:{tmp_path / 'mlruns'}",
            "experiment": "hospitals",
            "tensorboard": str(tmp_path / "tb"),
        },
    )


def test_a_tracked_run_logs_rounds_privacy_params_and_files(
    tmp_path: Path, mlflow_reader: Any
) -> None:
    result = fedsilo.simulate(_dp_job(tmp_path))
    assert result.tracking is not None
    where = result.tracking["mlflow"]
    client = mlflow_reader(f"file:{tmp_path / 'mlruns'}")
    run = client.get_run(where["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment_by_name("hospitals").experiment_id == where["experiment_id"]

    accuracy = client.get_metric_history(run.info.run_id, "global/accuracy")
    assert [m.step for m in accuracy] == [1, 2, 3]
    assert [m.value for m in accuracy] == [r.global_metrics["accuracy"] for r in result.history]
    epsilon = client.get_metric_history(run.info.run_id, "privacy/epsilon")
    assert [m.value for m in epsilon] == [r.privacy["epsilon"] for r in result.history]
    assert epsilon[0].value < epsilon[-1].value
    party = sorted(result.history[-1].party_metrics)[0]
    assert client.get_metric_history(run.info.run_id, f"parties/{party}/loss")
    assert run.data.metrics["final/global/auc"] == result.final_global["auc"]
    assert run.data.params["training.learning_rate"] == "0.1"
    assert run.data.params["privacy.client_dp.noise_multiplier"] == "0.5"
    assert run.data.tags["fedsilo.kind"] == "horizontal"
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"model.safetensors", "metrics.json", "metrics.csv", "report.html"} <= files

    events = _scalars(result.tracking["tensorboard"]["log_dir"])
    tb_accuracy = events.Scalars("global/accuracy")
    assert [e.step for e in tb_accuracy] == [1, 2, 3]
    assert [e.value for e in tb_accuracy] == pytest.approx(
        [r.global_metrics["accuracy"] for r in result.history], rel=1e-6
    )
    assert events.Scalars("privacy/epsilon")[-1].value == pytest.approx(
        result.history[-1].privacy["epsilon"], rel=1e-6
    )
    saved = result.save(tmp_path / "run")
    assert '"run_id": "' + where["run_id"] in saved["metrics_json"].read_text()


def test_cli_mlflow_option_tracks_a_vertical_run(tmp_path: Path, mlflow_reader: Any) -> None:
    job = tmp_path / "vertical.toml"
    job.write_text(
        'kind = "vertical"\nname = "vtrack"\n[[parties]]\nname = "bank"\n'
        'builtin = "breast_cancer/guest"\nlabel = "y"\n[[parties]]\nname = "shop"\n'
        'builtin = "breast_cancer/host"\n[hetero_lr]\nepochs = 2\n'
    )
    uri = f"file:{tmp_path / 'mlruns'}"
    result = runner.invoke(
        app,
        ["simulate", str(job), "--out", str(tmp_path / "out"), "--mlflow", uri],
    )
    assert result.exit_code == 0, result.output
    assert "mlflow:" in result.output
    client = mlflow_reader(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vtrack").experiment_id])
    losses = client.get_metric_history(run.info.run_id, "taylor_loss")
    assert [m.step for m in losses] == [1, 2]
    assert run.data.params["hetero_lr.epochs"] == "2"
    assert run.data.metrics["final/global/auc"] > 0.9
    assert "models" in {f.path for f in client.list_artifacts(run.info.run_id)}


@pytest.mark.parametrize(
    ("module", "option"), [("mlflow", "--mlflow"), ("tensorboard", "--tensorboard")]
)
def test_without_the_extra_one_line_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, option: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # not importable: find_spec gives None
    job = tmp_path / "job.toml"
    job.write_text('rounds = 1\n[data]\ndataset = "breast-cancer"\n')
    result = runner.invoke(
        app, ["simulate", str(job), "--out", str(tmp_path / "out"), option, str(tmp_path / "t")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("MissingExtraError: [tracking] of job 'job' needs the 'tracking'")
    assert lines[-1].endswith("pip install 'fedsilo[tracking]'")
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # refused before training


def test_a_run_that_fails_is_marked_failed(tmp_path: Path, mlflow_reader: Any) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("x,label\n1,yes\n,no\n3,yes\n4,no\n")
    job = small_job(
        data={"label": "label"},
        parties=[{"name": "a", "path": str(csv)}, {"name": "b", "path": str(csv)}],
        tracking={"mlflow": f"file:{tmp_path / 'mlruns'}", "experiment": "broken"},
    )
    for key in ("dataset", "num_parties", "partition"):
        del job["data"][key]
    with pytest.raises(fedsilo.errors.MissingValueError):
        fedsilo.simulate(job)
    client = mlflow_reader(f"file:{tmp_path / 'mlruns'}")
    (run,) = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert run.info.status == "FAILED"


def test_a_deployed_job_may_not_name_where_the_server_writes() -> None:
    tracking = '\n[tracking]\nmlflow = "file:/tmp/anywhere"\n'
    with pytest.raises(ConfigError, match=r"\[tracking\] is for `fedsilo simulate`"):
        parse_deploy_job(
            'name = "j"\n[data]\nlabel = "y"\n' + tracking, source="submitted", registered=["a"]
        )
    vertical = 'kind = "vertical"\n[[parties]]\nname = "a"\nlabel = "y"\n[[parties]]\nname = "b"\n'
    with pytest.raises(ConfigError, match=r"\[tracking\] is for `fedsilo simulate`"):
        parse_deploy_vertical_job(vertical + tracking, source="submitted", registered=["a", "b"])


def test_scalars_and_params_flatten_the_documents() -> None:
    entry = {
        "round": 4,
        "global": {"accuracy": 0.5, "auc": float("nan")},
        "parties": {"a": {"loss": 1}},
        "participants": ["a"],
        "failures": {"b": "timeout"},
        "privacy": {"epsilon": 2.0, "level": "client", "parties": {"a": {"epsilon": 2.0}}},
        "attempts": 1,
        "flag": True,
    }
    assert scalars(entry) == {
        "global/accuracy": 0.5,
        "parties/a/loss": 1.0,
        "privacy/epsilon": 2.0,
        "privacy/parties/a/epsilon": 2.0,
        "attempts": 1.0,
    }
    assert params({"a": {"b": 1, "c": [1, 2], "d": {}}, "e": "x", "f": None}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "a.d": "{}",
        "e": "x",
        "f": "null",
    }
