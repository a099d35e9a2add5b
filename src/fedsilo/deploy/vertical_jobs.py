"""Vertical jobs on the deployed server: parse the submitted TOML, run it over party processes.

A vertical deployment job is the same TOML as ``fedsilo simulate`` takes (``kind =
"vertical"``): its ``[[parties]]`` name the organizations, their ID column and which one holds
the label (``label``); their ``path``/``builtin`` entries are ignored by the server, because
each party process reads its own file (``[vertical] data`` in its ``party.toml``). Every named
party must be registered; all of them must be connected (a vertical model needs every party's
columns). The job runs with the same :class:`~fedsilo.vertical.runner.VerticalRunner` as the
simulation over :class:`~fedsilo.deploy.grpc_transport.GrpcTransport`.

Who stores what: the server's ``<run_dir>/<job id>/`` gets ``metrics.json`` (the shared core:
held-out metrics, per-epoch/per-tree history; its ``vertical`` section: alignment counts and
where each party keeps its part with the file's SHA-256), ``metrics.csv`` and ``report.html``; each party process writes its own model part (hetero LR weights and
standardization as safetensors; SecureBoost: the guest's trees and its own split table, a
host's split table, as JSON) under ``[vertical] models`` in its own directory. No model part
reaches the server. Vertical jobs are in the job store (``kind = 'vertical'``); a server
restarted mid-job records the job as failed with the reason (the protocol state was in memory)
and ``fedsilo submit --restart JOB_ID`` runs it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fedsilo.config_base import parse_toml
from fedsilo.deploy.grpc_transport import GrpcTransport, PartyBoard
from fedsilo.errors import ConfigError, FedsiloError
from fedsilo.tracking import refuse_in_deployment
from fedsilo.vertical.config import VerticalJobConfig, parse_vertical_job
from fedsilo.vertical.result import VerticalResult
from fedsilo.vertical.runner import VerticalRunner


def parse_deploy_vertical_job(
    text: str, *, source: str, registered: list[str] | None
) -> VerticalJobConfig:
    """Validate a vertical job for a deployment; every named party must be registered (not
    checked with ``registered=None``: a job read back from the store)."""
    raw = parse_toml(text, source=source)
    refuse_in_deployment(raw, source=source)
    parties = raw.get("parties")
    if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
        raise ConfigError(
            f"{source}: a vertical job lists its parties as [[parties]] tables (name, "
            "id_column, and label for the one label holder)"
        )
    raw["parties"] = [
        {**{k: v for k, v in p.items() if k not in ("path", "builtin")}, "path": "held-by-party"}
        for p in parties
    ]
    job = parse_vertical_job(raw, source=source)
    if registered is not None:
        require_registered([p.name for p in job.parties], registered, source=source)
    return job


def require_registered(names: list[str], registered: list[str], *, source: str) -> None:
    """Refuse a job naming a party this server does not know (or has revoked)."""
    unknown = sorted(set(names) - set(registered))
    if unknown:
        raise ConfigError(
            f"{source}: parties {', '.join(unknown)} are not registered (or are revoked) on "
            f"this server; registered: {', '.join(registered) or 'none'}"
        )


def wait_for_all(
    board: PartyBoard, job: VerticalJobConfig, wait_s: float, stop: Callable[[], bool]
) -> None:
    wanted = [p.name for p in job.parties]
    deadline = time.monotonic() + wait_s
    while not stop():
        missing = [p for p in wanted if p not in set(board.online())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise FedsiloError(
                f"vertical job {job.name!r} needs every party; {', '.join(missing)} did not "
                f"connect within {wait_s:g} s"
            )
        time.sleep(0.2)


def run_vertical_job(
    job: VerticalJobConfig,
    board: PartyBoard,
    *,
    job_id: str,
    out: Path,
    on_progress: Callable[[int], None],
) -> Path:
    """Run the job over the connected party processes; write metrics.json and the reports."""
    started = time.monotonic()
    runner = VerticalRunner(
        job,
        GrpcTransport(board, [p.name for p in job.parties]),
        job_id=job_id,
        on_epoch=lambda epoch, _loss, _s: on_progress(epoch + 1),
        on_tree=lambda tree, _s: on_progress(tree + 1),
    )
    outcome = runner.run()
    VerticalResult(job, outcome, wall_time_s=time.monotonic() - started).save(out)
    return out
