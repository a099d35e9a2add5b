"""What ``fedsilo simulate`` prints for vertical jobs: the numbering of epochs and trees, and
when the progress bar appears."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo.cli import app

SECTIONS = {
    "hetero_lr": ("epoch", "[hetero_lr]\nepochs = 3\nbatch_size = 256\ntolerance = 0.0\n"),
    "secureboost": ("tree", "[secureboost]\nn_trees = 3\nmax_depth = 2\nn_bins = 8\n"),
}


def _job(root: Path, algorithm: str) -> Path:
    rng = np.random.default_rng(5)
    n = 200
    host = rng.normal(size=(n, 2))
    y = (host[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    ids = [f"c{i}" for i in range(n)]
    guest = pd.DataFrame(rng.normal(size=(n, 2)), columns=["g0", "g1"]).assign(id=ids, y=y)
    guest.to_csv(root / "guest.csv", index=False)
    pd.DataFrame(host, columns=["h0", "h1"]).assign(id=ids).to_csv(root / "host.csv", index=False)
    path = root / "job.toml"
    path.write_text(
        f'kind = "vertical"\nname = "numbered"\nalgorithm = "{algorithm}"\nseed = 1\n'
        f'[[parties]]\nname = "bank"\npath = "{root / "guest.csv"}"\nlabel = "y"\n'
        f'[[parties]]\nname = "provider"\npath = "{root / "host.csv"}"\n'
        f'[he]\nscheme = "ckks"\n{SECTIONS[algorithm][1]}'
    )
    return path


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_the_cli_numbers_epochs_and_trees_as_metrics_json_and_csv_do(
    tmp_path: Path, algorithm: str
) -> None:
    unit = SECTIONS[algorithm][0]
    out = tmp_path / "run"

    result = CliRunner().invoke(app, ["simulate", str(_job(tmp_path, algorithm)), "-o", str(out)])

    assert result.exit_code == 0, result.output
    printed = [int(n) for n in re.findall(rf"^{unit}\s+(\d+)\s", result.output, re.MULTILINE)]
    history = json.loads((out / "metrics.json").read_text())["history"]
    with (out / "metrics.csv").open() as f:
        rows = [int(row[unit]) for row in csv.DictReader(f) if row.get(unit)]
    assert printed == [h[unit] for h in history] == rows == [1, 2, 3]


def _trained_run(root: Path) -> Path:
    """A run directory whose metrics.json holds the training job of a bank and a provider."""
    run = root / "trained"
    run.mkdir()
    config = {
        "kind": "vertical",
        "name": "trained",
        "parties": [
            {"name": "bank", "path": "bank.csv", "label": "y"},
            {"name": "provider", "path": "provider.csv"},
        ],
    }
    (run / "metrics.json").write_text(json.dumps({"job": {"config": config}}))
    return run


@pytest.mark.parametrize(
    ("run", "hosts", "error"),
    [
        ("no-such-run", "provider", "key 'run': .*no-such-run.* run the training job first"),
        ("trained", "retailer", r"parties \['bank', 'retailer'\] are not those of training run"),
    ],
)
def test_a_scoring_job_config_error_is_reported_before_any_progress_bar(
    tmp_path: Path, run: str, hosts: str, error: str
) -> None:
    _trained_run(tmp_path)
    job = tmp_path / "score.toml"
    job.write_text(
        f'kind = "vertical-score"\nname = "scores"\nrun = "{run}"\n'
        '[[parties]]\nname = "bank"\npath = "bank.csv"\n'
        f'[[parties]]\nname = "{hosts}"\npath = "{hosts}.csv"\n'
    )

    result = CliRunner().invoke(app, ["simulate", str(job), "-o", str(tmp_path / "out")])

    assert result.exit_code == 2
    assert re.search(f"ConfigError: scoring job 'scores'.*{error}", result.output), result.output
    assert "PSI" not in result.output and "0/5" not in result.output
    assert "with the saved parts of" not in result.output  # nor the banner of a run
