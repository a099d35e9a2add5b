"""Running one query: plan, budget check, exchange, (secure) sum, noise, post-processing.

:func:`run_query` is transport-agnostic: it sends one QUERY :class:`Message` per party through
``Transport.exchange`` (in-process simulation today, the gRPC deployment unchanged) and needs a
reply from every party (a partial sum would be a different, biased answer). The coordinator
keeps no ledger and enforces no budget: each party applies its own policy and charges its own
ledger before its statistics leave (:mod:`fedsilo.analytics.handler`), and reports its total
in its reply, which the answer shows. A party's refusal fails the query with the party's
reason (:class:`~fedsilo.errors.RefusedError` or :class:`~fedsilo.errors.BudgetExhaustedError`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fedsilo.analytics.answers import LINEAR, evaluate, linear_sd
from fedsilo.analytics.bodies import QueryReply
from fedsilo.analytics.config import (
    AnalyticsJob,
    ColumnKind,
    Mechanism,
    load_analytics_job,
    parse_analytics_job,
)
from fedsilo.analytics.dp import NoisePlan, calibrate
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.merge import SUMS_NOTICE, sum_statistics
from fedsilo.analytics.plan import Block, QueryPlan, make_plan
from fedsilo.analytics.policy import refusal, spend_reports
from fedsilo.analytics.secure import check_parties, secure_collect, secure_notice
from fedsilo.analytics.sql import ROW_FIELDS, Agg, Aggregate, parse_query
from fedsilo.errors import ErrorCode, ProtocolError
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.noise import NoiseSource
from fedsilo.privacy.secagg.identity import Identity, simulated_identities
from fedsilo.protocol.bodies import parse_body
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.failures import failure_detail
from fedsilo.runtime.transport import InProcessTransport, Transport

MAX_BOOTSTRAP_VALUES = 20_000_000
DEFAULT_LEDGERS = Path("runs/ledgers")  # simulated parties' ledgers: per party name, across jobs


@dataclass(frozen=True)
class Cell:
    """One answer: value (a list for HISTOGRAM), noise sd, and a 95% interval; None if undefined."""

    value: float | list[float] | None
    sd: float | list[float] | None
    ci: tuple[float, float] | list[tuple[float, float]] | None


@dataclass(frozen=True)
class QueryResult:
    sql: str
    group_by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    groups: list[tuple[str | int, ...]]
    cells: list[list[Cell]]  # [group][aggregate]
    suppressed: list[bool]
    mechanism: Mechanism
    epsilon: float
    delta: float
    noise_multiplier: float | None
    spent: dict[str, tuple[float, float | None]]  # party -> (its total epsilon, its budget)
    notices: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.aggregates]

    def to_json(self) -> dict[str, Any]:
        rows = []
        for g, cells, sup in zip(self.groups, self.cells, self.suppressed, strict=True):
            row: dict[str, Any] = dict(zip(self.group_by, g, strict=True))
            suppressed, answers = ROW_FIELDS  # never a group column (parse_query)
            row[suppressed] = sup
            row[answers] = {
                a.label: {"value": c.value, "noise_sd": c.sd, "ci95": c.ci}
                for a, c in zip(self.aggregates, cells, strict=True)
            }
            rows.append(row)
        return {
            "query": self.sql,
            "group_by": list(self.group_by),
            "rows": rows,
            "privacy": {
                "mechanism": self.mechanism.value,
                "epsilon": self.epsilon,
                "delta": self.delta,
                "noise_multiplier": self.noise_multiplier,
                "parties": {p: {"spent": s, "budget": b} for p, (s, b) in self.spent.items()},
            },
            "notices": self.notices,
        }


def party_tables(job: AnalyticsJob) -> dict[str, PartyTable]:
    """Each party's rows: its file, or its share of a built-in tabular dataset (seeded split)."""
    if job.data is None:
        return {p.name: PartyTable(str(p.path), path=p.path) for p in job.parties}
    from fedsilo.data.builtin import labelled_table

    frame = labelled_table(job.data.dataset)
    order = np.random.default_rng(job.seed or 0).permutation(len(frame))
    parts = np.array_split(order, job.data.num_parties)
    names = job.party_names()
    return {
        n: PartyTable(
            f"{job.data.dataset} share {i}", frame=frame.iloc[np.sort(idx)].reset_index(drop=True)
        )
        for i, (n, idx) in enumerate(zip(names, parts, strict=True))
    }


def simulated_party(
    name: str,
    table: PartyTable,
    job: AnalyticsJob,
    ledger_dir: Path | None = None,
    *,
    identity: Identity | None = None,
) -> AnalyticsAgent:
    """A simulated party: the job file stands in for its config (budget, policy, delta).

    Its ledger is ``ledger_dir/<name>.sqlite`` (kept across runs and jobs: renaming the job
    does not reset it), or in memory without ``ledger_dir``.
    """
    ledger = None if ledger_dir is None else ledger_dir / f"{name}.sqlite"
    guard = PrivacyGuard(name, PartyPrivacy(max_epsilon=job.budget(name), ledger=ledger))
    return AnalyticsAgent(name, table, job, guard=guard, policy=job.policy, identity=identity)


def simulation_transport(job: AnalyticsJob, ledger_dir: Path | None = None) -> InProcessTransport:
    tables = party_tables(job)
    ids = simulated_identities(tables)  # one signing key per simulated party, one roster
    return InProcessTransport(
        {n: simulated_party(n, t, job, ledger_dir, identity=ids[n]) for n, t in tables.items()}
    )


def query(
    config: AnalyticsJob | str | Path | Mapping[str, Any],
    sql: str,
    *,
    ledger_dir: str | Path | None = None,
) -> QueryResult:
    """Answer ``sql`` across an analytics job's simulated parties (``fedsilo.query``).

    The Python twin of ``fedsilo query JOB SQL``: ``config`` is an :class:`AnalyticsJob`, a
    path to its TOML file or a dict of the same shape; the simulated parties' privacy ledgers
    live in ``ledger_dir`` (default ``runs/ledgers``, as the CLI; one file per party name, not
    per job), so budgets carry over from one call, and one job name, to the next. The
    parties' headers are checked first (:func:`fedsilo.preflight.check_headers`): a declared
    column missing from a file or built-in dataset is one error before any query work.
    """
    from fedsilo.preflight import check_headers

    if isinstance(config, AnalyticsJob):
        job = config
    elif isinstance(config, str | Path):
        job = load_analytics_job(config)
    else:
        job = parse_analytics_job(dict(config), source="Python config")
    check_headers(job)
    ledgers = Path(ledger_dir) if ledger_dir is not None else DEFAULT_LEDGERS
    return run_query(job, sql, transport=simulation_transport(job, ledgers))


def _noise_source(job: AnalyticsJob, sql: str) -> NoiseSource:
    """The CSPRNG; with a job ``seed`` (simulation) a stream reproducible per query."""
    digest = int.from_bytes(hashlib.sha256(sql.encode()).digest()[:8], "little")
    return NoiseSource.for_mechanism(job.seed, "analytics", digest)


def run_query(
    job: AnalyticsJob,
    sql: str,
    *,
    transport: Transport,
    noise_source: NoiseSource | None = None,
) -> QueryResult:
    query = parse_query(sql, job)
    plan = make_plan(query, job)
    noise = calibrate(plan, job.privacy)
    names = job.party_names()
    check_parties(job, names)
    total, spent = collect(plan, job, transport, names, sql=sql)
    source = noise_source if noise_source is not None else _noise_source(job, sql)
    noisy = total + noise.sample(source, total.shape)
    result = release(query.aggregates, plan, noisy, noise, job, source)
    return QueryResult(
        sql=sql,
        group_by=query.group_by,
        aggregates=query.aggregates,
        groups=plan.groups,
        cells=result[0],
        suppressed=result[1],
        mechanism=noise.mechanism,
        epsilon=noise.epsilon,
        delta=noise.delta,
        noise_multiplier=noise.noise_multiplier,
        spent=spent,
        notices=notices(plan, job, noise, sum(result[1]), len(names)),
    )


def public_job(job: AnalyticsJob) -> dict[str, Any]:
    """The job as parties see it: schema, privacy, budgets; no party's file path."""
    raw = job.model_dump(mode="json")
    for p in raw["parties"]:
        if p.get("path") is not None:
            p["path"] = f"held-by-{p['name']}"
    return raw


class Collected(NamedTuple):
    """The summed statistics, and each party's reported (total epsilon spent, budget)."""

    total: np.ndarray
    spent: dict[str, tuple[float, float | None]]


def collect(
    plan: QueryPlan, job: AnalyticsJob, transport: Transport, names: list[str], *, sql: str = ""
) -> Collected:
    """Ask every party for its statistics; return their sum and each party's reported spend.

    In the clear (:func:`~fedsilo.analytics.merge.sum_statistics`), or, when the job enables
    ``[privacy.secure_aggregation]``, by :func:`~fedsilo.analytics.secure.secure_collect`
    (the coordinator then receives no party's statistics, only their sum). The task carries the plan, the public job (a deployed party re-checks the plan against its
    schema and prices the query against its own policy and budget) and the SQL text (for its
    ledger).
    """
    body = {"plan": plan.to_json(), "job": public_job(job), "sql": sql}
    if job.privacy.secure_aggregation.enabled:
        return Collected(*secure_collect(plan, job, transport, names, body))
    task = Message(TaskKind.QUERY, job.name, 0, "coordinator", body)
    gathered = transport.exchange({n: task for n in names}, timeout_s=job.timeout_s)
    failures = dict(gathered.failures)
    expected = (len(plan.groups), plan.num_stats)
    stats: dict[str, np.ndarray] = {}
    codes: dict[str, ErrorCode | None] = {}
    for name, reply in gathered.replies.items():
        arr = reply.arrays.get("stats")
        if reply.error is not None:
            failures[name] = reply.error
            codes[name] = reply.error_code
            continue
        try:
            answer = parse_body(QueryReply, reply, where=f"party {name!r}")
        except ProtocolError as exc:
            failures[name] = str(exc)
            continue
        if (answer.groups, answer.statistics) != expected:
            failures[name] = (
                f"party {name!r} round {reply.round}: query fields 'groups', 'statistics' are "
                f"{(answer.groups, answer.statistics)}, expected {expected}"
            )
        elif arr is None or arr.shape != expected or arr.dtype != np.float64:
            failures[name] = (
                f"sent statistics of shape {None if arr is None else arr.shape}, expected {expected}"
            )
        else:
            stats[name] = arr
    if failures:
        detail = failure_detail(failures)
        raise refusal(codes)(f"the query needs every party and {len(failures)} failed: {detail}")
    return Collected(sum_statistics(stats), spend_reports(gathered.replies))


def result_from_json(doc: dict[str, Any], job: AnalyticsJob) -> QueryResult:
    """Rebuild a :class:`QueryResult` from :meth:`QueryResult.to_json` (a server's answer)."""
    query = parse_query(str(doc["query"]), job)
    groups = make_plan(query, job).groups
    privacy = doc["privacy"]
    rows = doc["rows"]
    if len(rows) != len(groups):
        raise ProtocolError(f"answer has {len(rows)} groups, the query has {len(groups)}")

    def cell(raw: dict[str, Any]) -> Cell:
        ci = raw["ci95"]
        if ci is not None and ci and isinstance(ci[0], list):
            ci = [(float(a), float(b)) for a, b in ci]
        elif ci is not None:
            ci = (float(ci[0]), float(ci[1]))
        return Cell(raw["value"], raw["noise_sd"], ci)

    return QueryResult(
        sql=str(doc["query"]),
        group_by=query.group_by,
        aggregates=query.aggregates,
        groups=groups,
        cells=[[cell(r["answers"][a.label]) for a in query.aggregates] for r in rows],
        suppressed=[bool(r["suppressed"]) for r in rows],
        mechanism=Mechanism(privacy["mechanism"]),
        epsilon=float(privacy["epsilon"]),
        delta=float(privacy["delta"]),
        noise_multiplier=privacy["noise_multiplier"],
        spent={
            p: (float(v["spent"]), None if v["budget"] is None else float(v["budget"]))
            for p, v in privacy["parties"].items()
        },
        notices=[str(n) for n in doc["notices"]],
    )


def release(
    aggregates: tuple[Aggregate, ...],
    plan: QueryPlan,
    noisy: np.ndarray,
    noise: NoisePlan,
    job: AnalyticsJob,
    source: NoiseSource,
) -> tuple[list[list[Cell]], list[bool]]:
    """Post-process noisy statistics into cells; suppress groups whose noisy count is small."""
    groups = noisy.shape[0]
    count = evaluate(Aggregate(Agg.COUNT, (), "n"), plan, noisy)
    suppressed = [bool(job.min_group_size > 0 and c < job.min_group_size) for c in count]
    dp = noise.mechanism is not Mechanism.NONE
    reps = max(200, min(1000, MAX_BOOTSTRAP_VALUES // max(1, noisy.size)))
    boot = noisy[None] + noise.sample(source, (reps, *noisy.shape)) if dp else None
    sd = noise.sd
    cells: list[list[Cell]] = [[] for _ in range(groups)]
    for agg in aggregates:
        thr = (
            2.0 * float(sd[plan.offset(Block("hist", agg.columns, agg.bins))][0])
            if agg.bins
            else 0.0
        )
        value = evaluate(agg, plan, noisy, threshold=thr)
        lin = linear_sd(agg, plan, sd)
        if boot is not None:
            reps_v = evaluate(agg, plan, boot, threshold=thr)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups
                err = reps_v - value[None]
                lo = value - np.nanpercentile(err, 97.5, axis=0)
                hi = value - np.nanpercentile(err, 2.5, axis=0)
                boot_sd = np.nanstd(reps_v, axis=0)
        for g in range(groups):
            if suppressed[g]:
                cells[g].append(Cell(None, None, None))
                continue
            v = value[g]
            if boot is None:
                cells[g].append(_cell(v, 0.0, v, v))
            elif agg.func in LINEAR and lin is not None:
                cells[g].append(_cell(v, lin, lo[g], hi[g]))
            else:
                cells[g].append(_cell(v, boot_sd[g], lo[g], hi[g]))
    return cells, suppressed


def _num(x: Any) -> float | None:
    f = float(x)
    return None if np.isnan(f) else f


def _cell(v: Any, sd: Any, lo: Any, hi: Any) -> Cell:
    if np.ndim(v) == 1:
        sds = np.broadcast_to(np.asarray(sd, dtype=float), np.shape(v))
        los = np.broadcast_to(lo, np.shape(v))
        his = np.broadcast_to(hi, np.shape(v))
        return Cell(
            [float(x) for x in v],
            [float(s) for s in sds],
            [(float(a), float(b)) for a, b in zip(los, his, strict=True)],
        )
    value = _num(v)
    if value is None:
        return Cell(None, None, None)
    lo_f, hi_f = _num(lo), _num(hi)
    ci = None if lo_f is None or hi_f is None else (lo_f, hi_f)
    return Cell(value, _num(sd), ci)


def notices(
    plan: QueryPlan, job: AnalyticsJob, noise: NoisePlan, n_suppressed: int, parties: int
) -> list[str]:
    secure = job.privacy.secure_aggregation.enabled
    out = [secure_notice(job, parties) if secure else SUMS_NOTICE]
    clipped = [
        f"{c} to [{s.lower:g}, {s.upper:g}]"
        for c, s in plan.columns.items()
        if s.type is ColumnKind.NUMBER
        and any(b.kind != "hist" and c in b.columns for b in plan.blocks)
    ]
    if clipped:
        out.append(
            "summed values are clipped to their declared bounds (each party logs locally how "
            "many it clipped): " + ", ".join(clipped)
        )
    if any(b.kind == "hist" for b in plan.blocks):
        out.append("histogram values outside the bin edges are counted in the first/last bin")
    if noise.mechanism is Mechanism.NONE:
        out.append(
            "no differential privacy: answers are exact (mechanism = 'none')"
            + (" up to the fixed-point error above" if secure else "")
        )
    else:
        out.append(
            f"{noise.mechanism.value} noise per statistic; 95% intervals by parametric bootstrap "
            "of the noise (exact sd for COUNT, SUM, HISTOGRAM)"
        )
    if job.min_group_size > 0:
        out.append(
            f"groups with a noisy count below {job.min_group_size:g} suppressed: {n_suppressed}"
        )
    return out
