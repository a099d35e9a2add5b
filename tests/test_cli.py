from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fedsilo
from fedsilo.cli import app

runner = CliRunner()


def test_datasets_lists_the_builtins() -> None:
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    for name in ("breast-cancer", "digits", "mnist-5k"):
        assert name in result.output


def test_simulate_writes_outputs_and_prints_final_table(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "cli"\nrounds = 5\n[data]\ndataset = "breast-cancer"\n[model]\nname = "logreg"\n'
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["simulate", str(job), "--out", str(out), "--rounds", "2", "--seed", "5", "--baseline"]
    )
    assert result.exit_code == 0, result.output
    assert "round   2" in result.output
    assert "baseline (pooled)" in result.output
    assert "party-3" in result.output
    assert str(out / "report.html") in result.output.replace("\n", "")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["job"]["rounds"] == 2 and metrics["job"]["seed"] == 5
    assert "baseline" in metrics


def test_simulate_prints_where_it_wrote_as_clean_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "cli"\nrounds = 1\n[data]\ndataset = "breast-cancer"\n[model]\nname = "logreg"\n'
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    inside = runner.invoke(app, ["simulate", str(job), "--out", "./x/../runs/./cli"])
    outside = runner.invoke(app, ["simulate", str(job), "--out", "../elsewhere/../other"])

    assert inside.exit_code == 0 and outside.exit_code == 0, inside.output + outside.output
    lines = inside.output.splitlines()
    assert "model:   runs/cli/model.safetensors" in lines
    assert "metrics: runs/cli/metrics.json  runs/cli/metrics.csv" in lines
    assert "report:  runs/cli/report.html" in lines
    assert any(line.startswith("audit:   runs/cli/audit (") for line in lines)
    other = tmp_path.resolve() / "other"
    assert f"report:  {other / 'report.html'}" in outside.output.splitlines()
    assert (other / "report.html").is_file()
    for output in (inside.output, outside.output):
        assert "/./" not in output and "../" not in output


def test_bad_config_exits_2_with_a_readable_message(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[data]\ndataset = "breast-cancer"\n[model]\nnmae = "mlp"\n')
    result = runner.invoke(app, ["simulate", str(job)])
    assert result.exit_code == 2
    assert "ConfigError" in result.output and "model.nmae" in result.output
    assert "Traceback" not in result.output


def test_unknown_dataset_exits_2(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[data]\ndataset = "cifar"\n')
    result = runner.invoke(app, ["simulate", str(job)])
    assert result.exit_code == 2
    assert "cifar" in result.output


def test_examples_parse_as_toml() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    assert tomllib.loads((root / "mnist_3orgs.toml").read_text())["data"]["dataset"] == "mnist-5k"


def test_output_defaults_to_runs_slash_job_name(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text('name = "tiny"\nrounds = 1\n[data]\ndataset = "breast-cancer"\n')
    result = runner.invoke(app, ["simulate", str(job)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").exists()


BUDGET_JOB = """
name = "budget"
rounds = 2
[data]
dataset = "breast-cancer"
[training]
batch_size = 16
[selection]
min_parties = 2
[privacy]
delta = 1e-5
[privacy.record_dp]
enabled = true
noise_multiplier = 1.0
[privacy.budget]
parties = { "party-2" = 0.5 }
"""


def test_simulate_says_once_before_round_1_whose_budget_will_run_out(tmp_path: Path) -> None:
    # A real process: the command's own logging setup is what decides what reaches stderr.
    job = tmp_path / "job.toml"
    job.write_text(BUDGET_JOB)
    env = {**os.environ, "PYTHONPATH": str(Path(fedsilo.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "fedsilo", "simulate", str(job), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    said = [i for i, line in enumerate(lines) if "its privacy budget, epsilon 0.5" in line]
    first_round = next(i for i, line in enumerate(lines) if line.startswith("round   1"))
    assert len(said) == 1 and said[0] < first_round
    assert lines[said[0]].startswith(
        "WARNING: party 'party-2': its privacy budget, epsilon 0.5 at delta 1e-05, runs out at "
        "round 1 of 2: the job's plan takes it to epsilon "
    )
    assert "its privacy budget, epsilon 0.5 at delta" not in done.stderr  # not said twice
    refusals = [line for line in done.stderr.splitlines() if "refuses round" in line]
    assert [line.split(": ")[0] for line in refusals] == [
        "WARNING fedsilo.runtime.record_spend",
        "WARNING fedsilo.runtime.record_spend",
    ]
