"""``--baseline`` on a vertical job adds the guest-only model beside the pooled one.

The data make the answer known: the label depends on the host's columns only, so the guest's
columns alone score near chance while the pooled model scores near perfectly; metrics.json,
metrics.csv, report.html and the CLI summary say how much the hosts' columns add.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo.cli import app


def _files(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = 400
    signal = rng.normal(size=(n, 2))
    y = (signal[:, 0] + signal[:, 1] > 0).astype(int)
    ids = [f"c{i}" for i in range(n)]
    guest = pd.DataFrame(rng.normal(size=(n, 2)), columns=["g0", "g1"]).assign(id=ids, y=y)
    host = pd.DataFrame(signal, columns=["h0", "h1"]).assign(id=ids)
    paths = root / "guest.csv", root / "host.csv"
    guest.to_csv(paths[0], index=False)
    host.to_csv(paths[1], index=False)
    return paths


@pytest.mark.parametrize(
    ("algorithm", "section"),
    [
        ("hetero_lr", "[hetero_lr]\nepochs = 1\nbatch_size = 256\n"),
        ("secureboost", "[secureboost]\nn_trees = 2\nmax_depth = 2\nn_bins = 8\n"),
    ],
)
def test_guest_only_baseline_shows_what_the_hosts_columns_add(
    tmp_path: Path, algorithm: str, section: str
) -> None:
    guest, host = _files(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text(
        f'kind = "vertical"\nname = "only"\nalgorithm = "{algorithm}"\nseed = 1\n'
        f'[[parties]]\nname = "bank"\npath = "{guest}"\nlabel = "y"\n'
        f'[[parties]]\nname = "provider"\npath = "{host}"\n'
        f'[he]\nscheme = "ckks"\n{section}'
    )
    out = tmp_path / "run"

    result = CliRunner().invoke(app, ["simulate", str(job), "--baseline", "--out", str(out)])

    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    pooled, alone = doc["baseline"], doc["vertical"]["baseline_guest_only"]
    assert pooled["auc"] > 0.95 and abs(alone["auc"] - 0.5) < 0.15, (pooled, alone)
    added = doc["vertical"]["hosts_add"]
    assert added["auc"] == pytest.approx(pooled["auc"] - alone["auc"])
    assert "guest only" in result.output and "the hosts' columns add +0." in result.output
    scopes = {row["scope"] for row in csv.DictReader((out / "metrics.csv").open())}
    assert {"baseline", "baseline_guest_only"} <= scopes
    page = html.unescape((out / "report.html").read_text())
    assert "guest-only baseline, held-out" in page
    assert f"The hosts' columns add {added['auc']:+.4f} held-out AUC" in page


def test_no_guest_only_baseline_without_the_flag(tmp_path: Path) -> None:
    guest, host = _files(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text(
        f'kind = "vertical"\nname = "only"\nalgorithm = "secureboost"\n'
        f'[[parties]]\nname = "bank"\npath = "{guest}"\nlabel = "y"\n'
        f'[[parties]]\nname = "provider"\npath = "{host}"\n'
        "[secureboost]\nn_trees = 1\nmax_depth = 1\nn_bins = 4\n"
    )
    result = CliRunner().invoke(app, ["simulate", str(job), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["baseline"] is None and doc["vertical"]["baseline_guest_only"] is None
    assert doc["vertical"]["hosts_add"] is None
