"""The one CLI error handler, --version, enum options and the shared admin options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fedsilo
from fedsilo.cli import app
from fedsilo.cli.common import shown_path

runner = CliRunner()

CELLS_JOB = """
table = "cells"
[data]
dataset = "breast-cancer"
num_parties = 2
[columns]
label = { type = "category", categories = ["malignant", "benign"] }
"mean radius" = { type = "number", lower = 0, upper = 40 }
[privacy]
mechanism = "none"
"""


def test_error_message_brackets_survive_rich_markup(tmp_path: Path) -> None:
    # The message ends in `BINS=[e0, e1, ..., ek]`: Rich markup would eat `[e0, e1, ..., ek]`.
    job = tmp_path / "cells.toml"
    job.write_text(CELLS_JOB)
    result = runner.invoke(
        app,
        [
            "query",
            str(job),
            'SELECT HISTOGRAM("mean radius", 5) FROM cells',
            "--ledgers",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "as its last argument: BINS=[e0, e1, ..., ek]" in result.output
    assert "Traceback" not in result.output


def test_config_error_naming_a_toml_section_keeps_the_section(tmp_path: Path) -> None:
    # Neither [data] nor party paths: the message names `[[parties]]` and `[data]` verbatim.
    job = tmp_path / "cells.toml"
    job.write_text(CELLS_JOB.replace('dataset = "breast-cancer"\nnum_parties = 2\n', ""))
    job.write_text(job.read_text().replace("[data]\n", "[[parties]]\nname = 'a'\n"))
    result = runner.invoke(app, ["query", str(job), "SELECT COUNT(*) FROM cells"])
    assert result.exit_code == 2, result.output
    assert "give every [[parties]] entry a 'path', or use [data] dataset" in result.output


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fedsilo {fedsilo.__version__}"


def test_enum_option_refuses_an_unknown_choice(tmp_path: Path) -> None:
    job = tmp_path / "cells.toml"
    job.write_text(CELLS_JOB)
    result = runner.invoke(app, ["query", str(job), "SELECT COUNT(*) FROM cells", "-f", "xml"])
    assert result.exit_code != 0
    result = runner.invoke(
        app, ["query", str(job), "SELECT COUNT(*) FROM cells", "--format", "xml"]
    )
    assert result.exit_code == 2
    assert "xml" in result.output
    plan = ["privacy", "plan", "--noise", "1", "--rounds", "3", "--sample-rate", "0.1"]
    result = runner.invoke(app, [*plan, "--delta", "1e-5", "--method", "moments"])
    assert result.exit_code == 2
    assert "moments" in result.output


def test_admin_commands_share_one_option_set_and_one_token_check(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("name = 'x'\n")
    for args in (["submit", str(job)], ["status"]):
        result = runner.invoke(app, [*args, "--server", "127.0.0.1:1", "--insecure"], env={})
        assert result.exit_code == 2, result.output
        assert "ConfigError: no admin token: pass --token or set FEDSILO_ADMIN_TOKEN" in (
            result.output
        )
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2  # --server is required for submit and status
    assert "--server" in result.output


def test_python_dash_m_runs_the_same_app() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fedsilo.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fedsilo {fedsilo.__version__}"


def test_the_privacy_line_lists_parties_only_when_each_has_its_own_epsilon() -> None:
    from fedsilo.cli.privacy import privacy_line

    record = {
        "level": "record",
        "epsilon": 3.0,
        "delta": 1e-5,
        "parties": {"b": {"epsilon": 2.5}, "a": {"epsilon": 3.0}},
    }
    assert privacy_line({"final": {"privacy": record}}) == (
        "privacy: record-level epsilon 3 at delta 1e-05 (max over parties; a 3, b 2.5)"
    )
    # client-level DP has one epsilon, the federation's: no empty "(max over parties; )"
    client = {"level": "client", "epsilon": 66.54, "delta": 1e-5, "parties": {}}
    assert privacy_line({"final": {"privacy": client}}) == (
        "privacy: client-level epsilon 66.54 at delta 1e-05"
    )
    assert privacy_line({"final": {}}) == ""


def test_shown_path_is_relative_inside_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "runs" / "job").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert shown_path("./runs/x/.././job/report.html") == "runs/job/report.html"
    assert shown_path(tmp_path / "runs" / ".." / "runs" / "job") == "runs/job"
    assert shown_path(".") == "."


def test_shown_path_is_absolute_outside_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path("../runs/./job/../job/model.safetensors") == str(
        tmp_path.resolve() / "runs" / "job" / "model.safetensors"
    )


def test_shown_path_does_not_fold_dotdot_across_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    monkeypatch.chdir(tmp_path)
    # link/.. is real/, not the current directory: the path shown is where the file is
    assert shown_path("link/../out.csv") == "real/out.csv"
    assert shown_path("link/out.csv") == "link/out.csv"  # no '..': the symlink stays as written
