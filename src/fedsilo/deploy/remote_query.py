"""The admin side of ``fedsilo query JOB.toml "SQL" --server ADDR``."""

from __future__ import annotations

import json
from pathlib import Path

from fedsilo.analytics.run import QueryResult, result_from_json
from fedsilo.deploy.client import AdminClient
from fedsilo.deploy.queries import parse_deploy_analytics_job
from fedsilo.errors import ConfigError, ProtocolError


def query_server(client: AdminClient, job_file: Path, sql: str) -> QueryResult:
    """Send the job and the query; rebuild the answer for the usual table/CSV/JSON/HTML output."""
    try:
        text = job_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"job file {job_file} cannot be read: {exc.strerror}") from None
    job = parse_deploy_analytics_job(text, source=str(job_file))  # fail early, locally
    try:
        answer = client.query(text, sql, timeout_s=job.timeout_s + 60)
    finally:
        client.close()
    try:
        return result_from_json(json.loads(answer), job)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"the server's answer is malformed: {exc}") from None
