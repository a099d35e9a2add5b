"""Vertical jobs on the deployed server: parse the submitted TOML, run it over party processes.

A vertical deployment job is the same TOML as ``fedsilo simulate`` takes (``kind =
"vertical"``): its ``[[parties]]`` name the organizations, their ID column and which one holds
the label (``label``); their ``path``/``builtin`` entries are ignored by the server, because
each party process reads its own file (``[vertical] data`` in its ``party.toml``). Every named
party must be registered; all of them must be connected (a vertical model needs every party's
columns). The job runs with the same :class:`~fedsilo.vertical.runner.VerticalRunner` as the
simulation over :class:`~fedsilo.deploy.grpc_transport.GrpcTransport`. The runner's PSI and
HE libraries are the ``vertical`` extra: the server imports them when it runs such a job, so a
base install serves horizontal jobs and refuses a vertical one with the pip line.

Who stores what: the server's ``<run_dir>/<job id>/`` gets ``metrics.json`` (the shared core:
held-out metrics, per-epoch/per-tree history; its ``vertical`` section: alignment counts and
where each party keeps its part with the file's SHA-256), ``metrics.csv`` and ``report.html``; each party process writes its own model part (hetero LR weights and
standardization as safetensors; SecureBoost: the guest's trees and its own split table, a
host's split table, as JSON) under ``[vertical] models`` in its own directory. No model part
reaches the server. Vertical jobs are in the job store (``kind = 'vertical'``); a server
restarted mid-job records the job as failed with the reason (the protocol state was in memory)
and ``fedsilo submit --restart JOB_ID`` runs it again. ``fedsilo status`` shows a running
job's :class:`VerticalProgress` (epochs or trees, the last one's seconds, hetero LR's Taylor
loss) and a finished one's from its metrics.json (:func:`finished_progress`), so a restarted
server shows it as before; how far a failed job got is not kept (the store has no per-epoch
or per-tree rows for vertical jobs).

A scoring job (``kind = "vertical-score"``) names a finished training job's id as ``run``; the
server reads that job's ``metrics.json`` for roles, algorithm and HE scheme, each party reads
its own part under ``[vertical] models/<run>/`` and its file of new customers
(``[vertical] score_data``), and the guest keeps the scores (``predictions.csv`` beside its
part folders, under ``<job id>/``); the server writes ``score.json`` (counts, where the scores
are kept and their SHA-256).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedsilo.config_base import parse_toml
from fedsilo.deploy.grpc_transport import GrpcTransport, PartyBoard
from fedsilo.errors import ConfigError, FedsiloError
from fedsilo.extras import require
from fedsilo.jobs import parse_job
from fedsilo.runtime.anchors import AnchorKeeper
from fedsilo.runtime.store import JobStore
from fedsilo.runtime.transport import Transport
from fedsilo.tracking import refuse_in_deployment
from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[A-Za-z0-9][\w.\-]{0,127}")


def parse_deploy_vertical_job(
    text: str, *, source: str, registered: list[str] | None
) -> VerticalJobConfig | VerticalScoreJob:
    """Validate a vertical training or scoring job for a deployment; every named party must be
    registered (not checked with ``registered=None``: a job read back from the store); a
    scoring job's ``run`` is a training job id of this server."""
    raw = parse_toml(text, source=source)
    refuse_in_deployment(raw, source=source)
    parties = raw.get("parties")
    if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
        raise ConfigError(
            f"{source}: a vertical job lists its parties as [[parties]] tables (name, "
            "id_column, and label for the one label holder)"
        )
    shared = [p.get("name") for p in parties if "share_feature_names" in p]
    if shared:
        raise ConfigError(
            f"{source}: [[parties]] {', '.join(map(str, shared))}: key 'share_feature_names' is "
            "each party's own setting over the deployment: set [vertical] share_feature_names "
            "in its party.toml"
        )
    raw["parties"] = [
        {**{k: v for k, v in p.items() if k not in ("path", "builtin")}, "path": "held-by-party"}
        for p in parties
    ]
    job = parse_job(raw, source=source)
    assert isinstance(job, VerticalJobConfig | VerticalScoreJob)
    if isinstance(job, VerticalScoreJob) and not _JOB_ID.fullmatch(job.run):
        raise ConfigError(
            f"{source}: key 'run': {job.run!r} is not a job id; over the deployment a scoring "
            "job names its training job's id (`fedsilo status` lists them)"
        )
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
    board: PartyBoard,
    job: VerticalJobConfig | VerticalScoreJob,
    wait_s: float,
    stop: Callable[[], bool],
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


@dataclass(frozen=True)
class VerticalProgress:
    """How far a vertical training job got, as ``fedsilo status`` shows it: epochs (hetero LR)
    or trees (SecureBoost) done, the last one's seconds, and the latest metrics the runner
    has: while hetero LR trains, the last epoch's Taylor loss (``taylor_loss``); while
    SecureBoost trains, none (the guest reports its losses with the prediction); once the job
    is done, the held-out metrics."""

    done: int
    step_s: float = 0.0
    metrics: Mapping[str, float] = field(default_factory=dict)


def finished_progress(out: Path) -> VerticalProgress | None:
    """A finished vertical training job's progress from the metrics.json the server wrote to
    ``out`` (one entry per epoch or tree, the held-out metrics), or None if there is none:
    what a restarted server shows for the job, as it showed before."""
    try:
        doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        history, final = doc["history"], doc["final"]["global"]
        last_s = history[-1].get("duration_s") if history else None
        return VerticalProgress(
            len(history),
            float(last_s or 0.0),
            {k: float(v) for k, v in final.items() if isinstance(v, int | float)},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: no progress to show for this vertical job (%s)", out, exc)
        return None


def run_vertical_job(
    job: VerticalJobConfig,
    board: PartyBoard,
    *,
    job_id: str,
    out: Path,
    on_progress: Callable[[VerticalProgress], None],
    store: JobStore | None = None,
) -> Path:
    """Run the job over the connected party processes; write metrics.json and the reports.
    ``on_progress`` hears of every epoch or tree; with ``store``, every reply's audit-log
    anchor is kept there, as for every other job."""
    require("vertical", f"vertical job {job.name!r} on this server")
    from fedsilo.vertical.result import VerticalResult
    from fedsilo.vertical.runner import VerticalRunner  # PSI and HE: the extra's

    started = time.monotonic()
    runner = VerticalRunner(
        job,
        _transport(board, job, job_id, store),
        job_id=job_id,
        on_epoch=lambda epoch, loss, s: on_progress(
            VerticalProgress(epoch, s, {"taylor_loss": loss})
        ),
        on_tree=lambda tree, s: on_progress(VerticalProgress(tree, s)),
    )
    outcome = runner.run()
    VerticalResult(job, outcome, wall_time_s=time.monotonic() - started).save(out)
    return out


def run_vertical_score_job(
    job: VerticalScoreJob,
    board: PartyBoard,
    *,
    job_id: str,
    run_dir: Path,
    out: Path,
    store: JobStore | None = None,
) -> Path:
    """Score new customers over the connected party processes with the saved parts of the
    training job ``job.run`` (its results in ``run_dir``); score.json to ``out``. The scores
    stay with the guest (``[vertical] models/<job id>/predictions.csv`` at that party)."""
    require("vertical", f"vertical scoring job {job.name!r} on this server")
    from fedsilo.vertical.scoring import run_score_job

    transport = _transport(board, job, job_id, store)
    run_score_job(job, transport, run_dir=run_dir, job_id=job_id, out=out)
    return out


def _transport(
    board: PartyBoard,
    job: VerticalJobConfig | VerticalScoreJob,
    job_id: str,
    store: JobStore | None,
) -> Transport:
    """The job's parties over gRPC; with ``store``, keeping each reply's anchor there."""
    transport: Transport = GrpcTransport(board, [p.name for p in job.parties])
    return transport if store is None else AnchorKeeper(transport, store, job_id)
