"""Federated analytics on a running server: ``fedsilo query JOB.toml "SQL" --server ADDR``.

The admin sends the analytics job TOML and the SQL; the server runs
:func:`~fedsilo.analytics.run.run_query` over a :class:`GrpcTransport` to the job's parties
(one QUERY task each, answered by their party processes over their own files) and returns the
answer as JSON. The coordinator keeps no privacy ledger: each party applies its own
``[analytics.policy]`` and charges its own ledger (``[privacy]`` in its ``party.toml``; see
:mod:`fedsilo.deploy.party_analytics`), so the job names no budgets and no policy. The job's
``[[parties]]`` need no ``path`` here: each party maps the table to its file in its own
``party.toml``. Queries run one at a time. The SQL parser is the ``analytics`` extra: the
server imports it for its first query, so a base install serves training jobs and answers a
query with the pip line.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fedsilo.analytics.config import AnalyticsJob, parse_analytics_job
from fedsilo.config_base import parse_toml
from fedsilo.deploy.grpc_transport import GrpcTransport, PartyBoard
from fedsilo.errors import ConfigError
from fedsilo.extras import require
from fedsilo.runtime.anchors import AnchorKeeper
from fedsilo.runtime.store import JobStore
from fedsilo.runtime.transport import Transport


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
    if "policy" in raw:
        raise ConfigError(
            f"{source}: [policy] stands in for the parties' policies in simulation only; a "
            "deployed party answers under its own [analytics.policy] in its party.toml"
        )
    budgets = [
        p.get("name")
        for p in raw.get("parties") or []
        if isinstance(p, dict) and "max_epsilon" in p
    ]
    if budgets or "max_epsilon" in (raw.get("privacy") or {}):
        raise ConfigError(
            f"{source}: max_epsilon is a simulated party's budget; a deployed party keeps its "
            "own ([privacy] max_epsilon in its party.toml): remove it from the job"
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

    def __init__(
        self, board: PartyBoard, run_dir: Path, registered: list[str], store: JobStore | None = None
    ) -> None:
        self._board = board
        self._run_dir = run_dir
        self._store = store  # keeps the parties' signed audit-log anchors
        self._registered = registered
        self._lock = threading.Lock()

    def query(self, job_toml: str, sql: str) -> str:
        job = parse_deploy_analytics_job(
            job_toml, source="submitted analytics job", registered=self._registered
        )
        require("analytics", f"analytics job {job.name!r} on this server")
        from fedsilo.analytics.run import run_query  # the extra's SQL parser

        names = job.party_names()
        with self._lock:
            transport: Transport = GrpcTransport(self._board, names)
            if self._store is not None:
                transport = AnchorKeeper(transport, self._store, f"query:{job.name}")
            result = run_query(job, sql, transport=transport)
        return json.dumps(result.to_json())
