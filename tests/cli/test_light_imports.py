"""The admin command line stays light: `fedsilo --help`, `status`, `submit` and `certs` never
import torch, pandas or matplotlib (issue 14 item 8, issue 15 item 4; bench/cli_startup.py
times them).

One fresh interpreter runs the commands one after another, as `fedsilo` would, and reports
which heavy modules ``sys.modules`` holds after each: a command that pulls one in is named
(the commands after it are then reported too, since modules stay loaded).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import fedsilo

SOURCES = str(Path(fedsilo.__file__).resolve().parents[1])

HEAVY = ("torch", "pandas", "matplotlib", "sklearn")

RUNNER = """
import json, sys
from fedsilo.cli import main

heavy = {heavy!r}
report = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["fedsilo", *argv]
    try:
        main()
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
    report.append([argv[:2], code, [m for m in heavy if m in sys.modules]])
print(json.dumps(report))
"""


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _run(commands: list[list[str]]) -> list[tuple[list[str], int, list[str]]]:
    env = {**os.environ, "PYTHONPATH": SOURCES, "FEDSILO_ADMIN_TOKEN": "t"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(heavy=HEAVY), json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout.splitlines()[-1])]  # type: ignore[misc]


def test_help_status_submit_and_certs_import_no_torch_pandas_or_matplotlib(tmp_path: Path) -> None:
    # Arrange: a port nobody listens on, so status and submit run their whole path to the call
    closed = _closed_port()
    job = tmp_path / "job.toml"
    job.write_text('name = "x"\n[data]\ndataset = "digits"\n')
    commands = [
        ["--help"],
        ["--version"],
        ["status", "--server", closed, "--insecure"],
        ["submit", str(job), "--server", closed, "--insecure"],
        ["certs", "init", str(tmp_path / "ca")],
        ["certs", "issue", str(tmp_path / "ca"), "org-a", "--kind", "party"],
        ["certs", "issue", str(tmp_path / "ca"), "server", "--kind", "server"],
    ]

    # Act
    report = _run(commands)

    # Assert: every command ran (status/submit fail to connect: exit 2), none imported the heavy
    codes = [code for _, code, _ in report]
    assert codes == [0, 0, 2, 2, 0, 0, 0], report
    assert (tmp_path / "ca" / "org-a.pem").exists()
    loaded = {" ".join(argv): heavy for argv, _, heavy in report if heavy}
    assert loaded == {}, f"heavy modules imported by: {loaded}"


def test_the_check_sees_a_heavy_import() -> None:
    # The same runner reports torch once a command needs it (`datasets` imports the data code).
    report = _run([["--help"], ["datasets"]])
    assert report[0][2] == []
    assert "pandas" in report[1][2]


def test_a_job_without_record_dp_or_report_imports_no_opacus_sklearn_or_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A simulation that writes no report and runs no DP-SGD (bench/vs_flower.py's jobs) pays
    # only for torch and pandas: Opacus, scikit-learn and matplotlib cost ~2 s of import.
    # Arrange: the dataset parsed once (scikit-learn ships it), as after any earlier run
    from fedsilo.data import builtin

    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDSILO_CACHE_DIR", str(cache))
    builtin._raw.cache_clear()
    builtin.load_builtin("breast-cancer")
    builtin._raw.cache_clear()  # later tests load from their own cache (or parse)
    env = {**os.environ, "PYTHONPATH": SOURCES}
    assert list(cache.glob("breast-cancer-*.npz"))
    code = (
        "import json, sys\n"
        "from fedsilo.simulation import simulate\n"
        "simulate({'name': 'light', 'rounds': 1, 'data': {'dataset': 'breast-cancer',"
        " 'num_parties': 2}, 'model': {'name': 'logreg'}})\n"
        "print(json.dumps([m for m in ('opacus', 'sklearn', 'matplotlib') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_python_dash_m_fedsilo_is_the_fedsilo_command() -> None:
    """``python -m fedsilo`` runs the CLI (where the ``fedsilo`` script is not on PATH)."""
    done = subprocess.run(
        [sys.executable, "-m", "fedsilo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "simulate" in done.stdout and "Usage" in done.stdout
