"""Federated analytics on a running server: ``fedsilo query JOB.toml "SQL" --server ADDR``.

The admin sends the analytics job TOML and the SQL; the server runs
:func:`~fedsilo.analytics.run.run_query` over a :class:`GrpcTransport` to the job's parties
(one QUERY task each, answered by their party processes over their own files) and returns the
answer as JSON. The coordinator keeps its ledger under ``<run_dir>/analytics/<job>/ledger``
and checks it before asking anyone; each party also checks its own ledger and
``[analytics] max_epsilon`` (see :mod:`fedsilo.deploy.party_tasks`). The job's ``[[parties]]``
need no ``path`` here: each party maps the table to its file in its own ``party.toml``.
Queries run one at a time (the ledgers are read, checked and charged under one lock).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fedsilo.analytics.config import AnalyticsJob, parse_analytics_job
from fedsilo.analytics.run import run_query
from fedsilo.config_base import parse_toml
from fedsilo.deploy.grpc_transport import GrpcTransport, PartyBoard
from fedsilo.errors import ConfigError


def parse_deploy_analytics_job(
    text: str, *, source: str, registered: list[str] | None = None
) -> AnalyticsJob:
    """An analytics job for the deployment: parties by name (no paths), all registered."""
    raw = parse_toml(text, source=source)
    if raw.get("data") is not None:
        raise ConfigError(
            f"{source}: [data] (a built-in dataset split into simulated parties) runs only in "
            "simulation; on a server the parties are the connected party processes"
        )
    parties = raw.get("parties")
    if parties is None:  # every registered party (the admin's side only checks the schema)
        parties = [{"name": p} for p in registered or ["every-registered-party"]]
    if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
        raise ConfigError(f"{source}: [[parties]] must be a list of tables with a name")
    raw["parties"] = [{**p, "path": p.get("path", f"held-by-{p.get('name')}")} for p in parties]
    job = parse_analytics_job(raw, source=source)
    if registered is not None:
        unknown = sorted(set(job.party_names()) - set(registered))
        if unknown:
            raise ConfigError(
                f"{source}: parties {', '.join(unknown)} are not registered (or are revoked) "
                f"on this server; registered: {', '.join(registered) or 'none'}"
            )
    return job


class QueryRunner:
    """Runs admin queries over the party board, one at a time."""

    def __init__(self, board: PartyBoard, run_dir: Path, registered: list[str]) -> None:
        self._board = board
        self._run_dir = run_dir
        self._registered = registered
        self._lock = threading.Lock()

    def query(self, job_toml: str, sql: str) -> str:
        job = parse_deploy_analytics_job(
            job_toml, source="submitted analytics job", registered=self._registered
        )
        names = job.party_names()
        with self._lock:
            result = run_query(
                job,
                sql,
                transport=GrpcTransport(self._board, names),
                ledger_dir=self._run_dir / "analytics" / job.name / "ledger",
            )
        return json.dumps(result.to_json())
