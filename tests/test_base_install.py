"""`pip install fedsilo` without extras runs horizontal jobs, in simulation and over a deployment
(server and party processes); a job needing an extra says which (issue 15 item 5).

A fresh virtualenv (``python -m venv``, no system site-packages) gets exactly the distributions
that pyproject.toml's ``[project] dependencies`` pull in, nothing of the extras: the closure of
those requirements (markers evaluated, no extras) is read from the installed metadata and each
distribution's files are linked into the venv's site-packages, with its ``.dist-info``, and the
fedsilo sources beside them. That is what pip would install from the same wheels, without
copying ~1 GB of torch (a real `pip install torch==2.13.0 && pip install .` into a fresh venv
took 3 min 48 s on this machine under load; docs/architecture.md, "Optional extras"). What
this does not check is pip's resolution against an index.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import fedsilo
from fedsilo.errors import AdminCallError
from fedsilo.extras import EXTRAS
from tests.deploy.harness import PARTIES, deployment, job_done, job_toml, write_party_csvs

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(fedsilo.__file__).resolve().parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure() -> dict[str, metadata.Distribution]:
    """Every installed distribution the base requirements need, by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    found: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _canonical(req.name)
        if name in found:
            continue
        dist = metadata.distribution(req.name)  # a base dependency missing here fails loudly
        assert req.specifier.contains(dist.version, prereleases=True), (req, dist.version)
        found[name] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return found


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The entries a distribution puts directly in site-packages (packages, modules, .libs,
    its .dist-info); scripts outside site-packages are left out."""
    return {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    for dist in base_closure().values():
        where = Path(str(dist.locate_file("")))
        for entry in _top_level(dist):
            if not (site / entry).exists() and (where / entry).exists():
                (site / entry).symlink_to(where / entry)
    (site / "fedsilo").symlink_to(SOURCES)
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_venv_holds_no_extra(base_venv: Path, tmp_path: Path) -> None:
    # The environment is what it claims: no module of any extra, the pinned torch installed.
    probe = (
        "import importlib.util, json; from importlib.metadata import version; "
        f"print(json.dumps([m for e in {sorted(EXTRAS)!r} for m in {EXTRAS!r}[e] "
        "if importlib.util.find_spec(m)]), version('torch'))"
    )
    done = _run(base_venv, "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", metadata.version("torch")]


def test_base_install_runs_a_horizontal_job(base_venv: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "base"\nseed = 3\nrounds = 2\n'
        '[data]\ndataset = "breast-cancer"\nnum_parties = 3\n'
        '[model]\nname = "logreg"\n'
    )
    done = _run(base_venv, "-m", "fedsilo.cli", "simulate", str(job), "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert metrics["final"]["global"]["accuracy"] > 0.8
    assert (tmp_path / "run" / "report.html").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("simulate", str(ROOT / "examples/vertical_breast_cancer/job.toml")), "vertical"),
        (
            ("query", str(ROOT / "examples/analytics/job.toml"), "SELECT COUNT(*) FROM t"),
            "analytics",
        ),
        (("simulate", str(ROOT / "examples/hospitals_breast_cancer.toml"), "--ray", "auto"), "ray"),
    ],
)
def test_a_job_needing_an_extra_exits_2_with_the_pip_line(
    base_venv: Path, tmp_path: Path, args: tuple[str, ...], extra: str
) -> None:
    done = _run(base_venv, "-m", "fedsilo.cli", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("MissingExtraError: ")
    assert lines[0].endswith(f"pip install 'fedsilo[{extra}]'")
    assert "Traceback" not in done.stdout + done.stderr


ANALYTICS_JOB = """name = "loans"
table = "loans"

[columns.amount]
type = "number"
lower = 0
upper = 1000

[privacy]
mechanism = "laplace"
epsilon = 1.0
"""


def test_base_install_deploys_a_horizontal_job_and_refuses_what_needs_an_extra(
    base_venv: Path, tmp_path: Path
) -> None:
    # The README's deployment (server and party processes over TLS) with nothing but the base
    # requirements: before, both processes died at start on an import of phe or sqlglot.
    parties = PARTIES[:2]
    csvs = write_party_csvs(tmp_path, parties)
    with deployment(tmp_path, parties=parties, python=str(base_venv / "bin" / "python")) as dep:
        dep.start_horizontal(csvs)
        job_id = dep.submit(job_toml(csvs, rounds=2))
        status = dep.wait_status(job_done(job_id))
        job = next(j for j in status.jobs if j.job_id == job_id)
        assert (job.status, job.round) == ("done", 2)
        assert (Path(job.run_dir) / "model.safetensors").is_file()

        # what the server cannot run is refused with the pip line, and it keeps serving
        vertical = (ROOT / "examples/deploy/vertical_job.toml").read_text()
        with pytest.raises(AdminCallError) as refused:
            dep.submit(vertical)
        assert "(INVALID_ARGUMENT)" in str(refused.value)
        assert str(refused.value).endswith("pip install 'fedsilo[vertical]'")
        admin = dep.admin()
        try:
            with pytest.raises(AdminCallError) as refused:
                admin.query(ANALYTICS_JOB, "SELECT COUNT(*) FROM loans", timeout_s=30)
            assert str(refused.value).endswith("pip install 'fedsilo[analytics]'")
            assert {p.name for p in admin.status().parties if p.online} == set(parties)
        finally:
            admin.close()
        for key in ("server", *parties):
            assert "Traceback" not in dep.log(key), dep.log(key)[-3000:]


@pytest.mark.parametrize(
    ("section", "extra"),
    [
        ('[analytics.tables]\nloans = "{data}"\n', "analytics"),
        ('[vertical]\ndata = "{data}"\n', "vertical"),
    ],
)
def test_a_party_declaring_a_role_without_its_extra_stops_with_the_pip_line(
    base_venv: Path, tmp_path: Path, section: str, extra: str
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("id,amount\n1,2\n")
    config = tmp_path / "party.toml"
    config.write_text(
        'name = "org-a"\nserver = "127.0.0.1:9"\ntoken = "t"\n' + section.format(data=data)
    )
    done = _run(base_venv, "-m", "fedsilo.cli", "party", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("MissingExtraError: party 'org-a' (")
    assert lines[0].endswith(f"pip install 'fedsilo[{extra}]'")
