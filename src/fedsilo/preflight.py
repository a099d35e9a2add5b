"""A job's files against its configuration, from their headers, before any heavy work.

:func:`check_headers` reads only each party file's column names (a CSV's first line, a
Parquet file's footer) and refuses what is visible there, naming the party, the file and the
column: a missing label, ID or declared column (horizontal), a vertical party's missing ID,
label or feature column or a host holding the guest's label column, an analytics file (or
built-in dataset) without a declared column. ``fedsilo simulate`` and ``fedsilo query`` run it
right after loading the job (and :func:`require_extras`, so a missing extra is named first) and before importing PyTorch, the HE libraries or the SQL planner, so such an error is
reported in about a second (``bench/header_errors.py`` measures it). The parties check the
same again when they read their rows (:mod:`fedsilo.data.typed`), in simulation and deployment.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from fedsilo.data.tabular import listing
from fedsilo.data.typed import check_header, file_columns
from fedsilo.errors import ConfigError, SchemaError
from fedsilo.extras import require

if TYPE_CHECKING:
    from fedsilo.analytics.config import AnalyticsJob
    from fedsilo.config import JobConfig
    from fedsilo.jobs import Job


def require_extras(job: Job, *, ray: str | None = None) -> None:
    """Refuse, before any work, a training job whose optional extra is not installed (the
    error says ``pip install 'fedsilo[vertical]'``): a horizontal job needs none, ``ray`` the
    ray extra. (An analytics job's entry points require theirs.)"""
    from fedsilo.config import JobConfig
    from fedsilo.vertical.config import VerticalJobConfig

    if isinstance(job, VerticalJobConfig):
        if ray is not None:
            raise ConfigError(
                f"--ray runs horizontal jobs; {job.name!r} is a vertical job: run it without --ray"
            )
        require("vertical", f"vertical job {job.name!r}")
    elif isinstance(job, JobConfig) and ray is not None:
        require("ray", f"--ray {ray}")


def check_headers(job: Job, *, skip: frozenset[str] = frozenset()) -> None:
    """Every party file's header against ``job`` (parties in ``skip`` have no file here)."""
    from fedsilo.config import JobConfig
    from fedsilo.vertical.config import VerticalJobConfig

    if isinstance(job, JobConfig):
        _horizontal(job, skip)
    elif isinstance(job, VerticalJobConfig):
        from fedsilo.vertical.data import check_headers as vertical_headers

        vertical_headers(job, skip=dict.fromkeys(skip))
    elif job.kind == "analytics":
        _analytics(job, skip)
    # a vertical scoring job: each party checks its new file against its own saved part


def _horizontal(job: JobConfig, skip: frozenset[str]) -> None:
    d = job.data
    files = [(p.name, p.path) for p in job.parties if p.path is not None and p.name not in skip]
    if d.path is not None:
        files.append(("simulation source", d.path))
    for party, path in files:
        found = file_columns(Path(path), party=party)
        check_header(
            found, label=d.label, id_column=d.id, declared=d.columns, party=party, source=str(path)
        )
        if d.column is not None and d.column not in found:
            raise SchemaError(
                f"data.column = {d.column!r} is not a column of {path}; columns found: "
                f"{listing(found)}"
            )
    if d.test_path is not None:
        found = file_columns(Path(d.test_path), party="test set")
        check_header(found, label=d.label, party="test set", source=str(d.test_path))


def _analytics(job: AnalyticsJob, skip: frozenset[str]) -> None:
    if job.data is not None:  # every simulated party holds a share of the one built-in table
        from fedsilo.data.builtin import labelled_table

        found = [str(c) for c in labelled_table(job.data.dataset).columns]
        where = f"[data] dataset {job.data.dataset!r} (every simulated party's share)"
        _declared_columns(job, found, where=where, fix="the job's [columns]")
    for p in job.parties:
        if p.path is None or p.name in skip:
            continue
        found = file_columns(Path(p.path), party=p.name)
        where = f"party {p.name!r}: {p.path}"
        _declared_columns(job, found, where=where, fix="the file or the job's [columns]")


def _declared_columns(job: AnalyticsJob, found: list[str], *, where: str, fix: str) -> None:
    """Every column of the job's ``[columns]`` among ``found``, else one SchemaError naming
    ``where``, the missing columns, the nearest found name and the columns found."""
    absent = sorted(c for c in job.columns if c not in found)
    if not absent:
        return
    near = [m for c in absent for m in difflib.get_close_matches(c, found, n=1)]
    hint = f" Did you mean {listing(near)}?" if near else ""
    raise SchemaError(
        f"{where} lacks the declared column(s) {absent}; columns found: "
        f"{listing(sorted(found))}.{hint} Fix {fix} (a name with "
        'spaces is written [columns."mean radius"] in TOML and "mean radius" in SQL).'
    )
