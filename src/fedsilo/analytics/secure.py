"""Secure aggregation of the parties' statistics: the coordinator learns only their sum.

With ``[privacy.secure_aggregation] enabled = true`` no QUERY reply carries a ``stats`` array.
The query runs the SecAgg / SecAgg+ state machines of :mod:`fedsilo.privacy.secagg.protocol`
(the ones training uses; bodies from :mod:`fedsilo.privacy.secagg.wire`) as five
``Transport.exchange`` rounds of QUERY tasks, each marked ``body["secagg"]["step"]``:

0. ``keys``: the plan and the round setup; each party checks the plan, computes its
   statistics, encodes them in Z_{2^64} (:mod:`fedsilo.analytics.fixed_point`), keeps them
   under the query's id and answers with its two public keys only;
1. ``shares``: the party's neighbours' keys in, its encrypted Shamir shares out;
2. ``mask``: the ciphertexts addressed to it in, its masked statistics out (**the moment its
   statistics leave**: the party charges its ledger here, and reports its spend);
3. ``confirm``: the survivor set in (the party refuses anything short of every party: a query
   never tolerates a dropout), its confirmations (MACs) of the set out (consistency round);
4. ``unmask``: its neighbours' confirmations in, its share reveals out.

The coordinator removes the masks and decodes the sum. A query needs every party (a partial
sum is a different, biased answer): a party that fails or drops at any step aborts the query
with a :class:`ProtocolError` naming it, and the coordinator then sends no further step (in
particular no unmask request, so no partial sum is ever unmasked). DP noise is added by the
coordinator to the decoded sum, as for plain sums.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import numpy as np

from fedsilo.analytics.bodies import Step
from fedsilo.analytics.config import AnalyticsJob
from fedsilo.analytics.fixed_point import RING_BITS, FixedPoint, fraction_bits
from fedsilo.analytics.plan import QueryPlan
from fedsilo.analytics.policy import refusal, spend_reports
from fedsilo.config import SecAggVariant
from fedsilo.errors import ConfigError, ErrorCode, ProtocolError
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.identity import Identity, require_identity
from fedsilo.privacy.secagg.params import ThreatModel
from fedsilo.privacy.secagg.protocol import PartyRound, ServerRound
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.failures import failure_detail
from fedsilo.runtime.transport import Transport

log = logging.getLogger(__name__)

STEPS: tuple[str, ...] = get_args(Step)
T = TypeVar("T")
MAX_PENDING = 16  # queries a party keeps protocol state for (oldest dropped first)


def variant_name(job: AnalyticsJob) -> str:
    v = job.privacy.secure_aggregation.variant
    return "SecAgg+" if v is SecAggVariant.SECAGG_PLUS else "SecAgg"


def secure_notice(job: AnalyticsJob, parties: int) -> str:
    rel = parties * 2.0 ** -(fraction_bits(job.privacy.secure_aggregation.max_rows) + 1)
    return (
        f"sums: secure aggregation ({variant_name(job)}), coordinator sees only the sum "
        f"(fixed-point error <= {rel:.2g} x each sum's per-row bound, counts exact); "
        "DP noise added by the coordinator after the secure sum"
    )


def check_parties(job: AnalyticsJob, names: list[str]) -> None:
    """Secure aggregation needs two parties: one party's "sum" is its own statistics."""
    if job.privacy.secure_aggregation.enabled and len(names) < 2:
        raise ConfigError(
            f"privacy.secure_aggregation needs at least 2 parties and this job has "
            f"{len(names)} ({', '.join(names) or 'none'}): with one party the sum is that "
            "party's own statistics; add parties or set enabled = false"
        )


def _step(
    transport: Transport, tasks: Mapping[str, Message], step: str, timeout_s: float
) -> dict[str, Message]:
    """One protocol step; every party must answer it, else the query aborts naming them."""
    gathered = transport.exchange(tasks, timeout_s=timeout_s)
    failures = {p: why for p, why in gathered.failures.items() if p in tasks}
    codes: dict[str, ErrorCode | None] = {}
    for p, reply in gathered.replies.items():
        if reply.error is not None:
            failures[p] = reply.error
            codes[p] = reply.error_code
    missing = set(tasks) - set(gathered.replies) - set(failures)
    for p in missing:
        failures[p] = "no reply"
    if failures:
        detail = failure_detail(failures)
        raise refusal(codes)(
            f"secure aggregation aborted at step '{step}' (the query needs every party, "
            f"{len(failures)} failed; no sum was unmasked): {detail}"
        )
    return {p: gathered.replies[p] for p in tasks}


def _parsed(
    replies: Mapping[str, Message], step: str, parse: Callable[[Message], T]
) -> dict[str, T]:
    out: dict[str, T] = {}
    for p, r in replies.items():
        try:
            out[p] = parse(r)
        except ProtocolError as exc:
            raise ProtocolError(
                f"secure aggregation aborted at step '{step}': party '{p}': {exc}"
            ) from None
    return out


def secure_collect(
    plan: QueryPlan,
    job: AnalyticsJob,
    transport: Transport,
    names: list[str],
    query_body: dict[str, Any],
) -> tuple[np.ndarray, dict[str, tuple[float, float | None]]]:
    """Run one secure-aggregation round over every party; the decoded sum, each party's spend.

    ``query_body`` (plan, public job, SQL) rides on the first step only. Parties report their
    spend with their masked statistics (step ``mask``, when they charge their ledgers).
    """
    cfg = job.privacy.secure_aggregation
    check_parties(job, names)
    fp = FixedPoint.for_plan(plan, cfg.max_rows)
    groups = len(plan.groups)
    query = secrets.token_hex(8)  # per-query state key at the parties; bound into every key
    tag = f"{job.name}|query|{query}"
    plus = cfg.variant is SecAggVariant.SECAGG_PLUS
    raised = wire.raised_degree(len(names), cfg.neighbours, ThreatModel()) if plus else None
    if raised is not None:
        log.warning("query: secure aggregation: %s", raised)
    rs = wire.plan_round(
        names,
        plus=plus,
        neighbours=cfg.neighbours,
        threshold=cfg.threshold,
        bits=RING_BITS,
        length=groups * plan.num_stats,
        tag=tag,
        graph_seed=int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little"),
    )
    server = ServerRound(rs)
    timeout = job.timeout_s

    def task(step: str, body: dict[str, Any], extra: dict[str, Any] | None = None) -> Message:
        spec = {"query": query, "step": step} | body
        return Message(TaskKind.QUERY, job.name, 0, "coordinator", (extra or {}) | {"secagg": spec})

    # 0: the plan; each party computes and encodes its statistics, advertises its keys
    replies = _step(
        transport,
        {p: task("keys", wire.setup_body(rs), query_body) for p in names},
        "keys",
        timeout,
    )
    advertised = _parsed(replies, "keys", lambda r: wire.parse_keys_reply(r.body))
    routed = server.route_keys(advertised)
    _all_present(routed, names, "keys")
    # 1: relay neighbours' public keys; collect encrypted shares
    replies = _step(
        transport,
        {p: task("shares", wire.keys_body(ks)) for p, ks in routed.items()},
        "shares",
        timeout,
    )
    sent = _parsed(replies, "shares", lambda r: wire.parse_shares_reply(r.body))
    inbox = server.route_shares(sent)
    _all_present(inbox, names, "shares")
    # 2: relay the ciphertexts; collect masked statistics
    replies = _step(
        transport,
        {p: task("mask", {"shares": wire.encode_ciphertexts(box)}) for p, box in inbox.items()},
        "mask",
        timeout,
    )
    masked = _parsed(replies, "mask", _masked_array)
    spent = spend_reports(replies)
    survivors, dropped = server.collect(masked)
    if dropped or len(survivors) != len(names):
        raise ProtocolError(f"secure aggregation aborted at step 'mask': {dropped} dropped")
    # 3: consistency round: every party confirms the survivor set (all of them)
    replies = _step(
        transport,
        {p: task("confirm", wire.confirm_body(server)) for p in survivors},
        "confirm",
        timeout,
    )
    confirmed = _parsed(replies, "confirm", lambda r: wire.parse_confirm_reply(r.body))
    relayed = server.route_confirmations(confirmed)
    # 4: every party reveals the shares that remove the self-masks
    replies = _step(
        transport,
        {p: task("unmask", wire.unmask_body(cs)) for p, cs in relayed.items()},
        "unmask",
        timeout,
    )
    reveals = _parsed(replies, "unmask", lambda r: wire.parse_reveal_reply(r.body))
    try:
        total = server.unmask(reveals)
    except (ValueError, ArithmeticError) as exc:  # e.g. duplicate share points from a party
        raise ProtocolError(f"secure aggregation aborted at step 'unmask': {exc}") from None
    out = fp.decode(total, groups=groups)
    fp.check_rows(out[:, 0], cfg.max_rows)  # block 0 is always the group's row count
    return out, spent


def _masked_array(reply: Message) -> np.ndarray:
    y = reply.arrays.get("masked")
    if y is None:
        raise ProtocolError("the reply carries no masked statistics")
    return y


def _all_present(got: Mapping[str, Any], names: list[str], step: str) -> None:
    lost = sorted(set(names) - set(got))
    if lost:
        raise ProtocolError(
            f"secure aggregation aborted at step '{step}': "
            + ", ".join(f"party '{p}'" for p in lost)
            + " fell out of the round (the query needs every party)"
        )


# --------------------------------------------------------------------------- the party side


@dataclass
class _Pending:
    round: PartyRound
    vector: np.ndarray  # the encoded statistics, masked at step 'mask'


class SecureParty:
    """One party's protocol state, per query id (sequential or interleaved queries never mix).

    State is dropped once the party has revealed its shares, and at most :data:`MAX_PENDING`
    unfinished queries are kept (an aborted query's state ages out).
    """

    def __init__(self, name: str, identity: Identity | None = None) -> None:
        self.name = name
        self._identity = identity
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def start(
        self, spec: Mapping[str, Any], stats: np.ndarray, fp: FixedPoint, *, job_id: str
    ) -> dict[str, str]:
        """Step ``keys``: encode the statistics, keep them, advertise this query's keys."""
        query = self._query(spec)
        identity = require_identity(self.name, self._identity)
        setup = wire.setup_from_body(spec, tag_prefix=f"{job_id}|query|{query}")
        if setup.bits != RING_BITS or setup.length != stats.size:
            raise ProtocolError(
                f"party '{self.name}' refuses a {setup.bits}-bit ring of length {setup.length} "
                f"for {stats.size} statistics in Z_2^{RING_BITS}"
            )
        vector = fp.encode(stats, party=self.name)
        state = PartyRound(identity, setup, tolerate_dropouts=False)
        body = wire.keys_reply(state)
        with self._lock:
            if query in self._pending:
                raise ProtocolError(f"party '{self.name}': query {query} was already started")
            self._pending[query] = _Pending(state, vector)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        return body

    def step(self, spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Steps ``shares``, ``mask``, ``unmask`` of a started query."""
        query, step = self._query(spec), str(spec.get("step"))
        with self._lock:
            pending = self._pending.get(query)
        if pending is None:
            raise ProtocolError(
                f"party '{self.name}': no secure-aggregation state for query {query} (step "
                f"'{step}' arrived without its 'keys' step, or the query was abandoned)"
            )
        try:
            if step == "shares":
                return wire.shares_reply(pending.round.share(wire.parse_keys_body(spec))), {}
            if step == "mask":
                boxes = wire.decode_ciphertexts(spec.get("shares"))
                return {}, {"masked": pending.round.mask(boxes, pending.vector)}
            if step == "confirm":
                confirmation = pending.round.confirm(wire.parse_confirm_body(spec))
                return wire.confirm_reply(confirmation), {}
            if step == "unmask":
                self.forget(query)  # one unmasking per query, whatever its outcome
                reveal = pending.round.unmask(wire.parse_unmask_body(spec))
                return wire.reveal_reply(reveal), {}
        except ProtocolError:
            self.forget(query)  # a failed step ends this query here: its secrets go
            raise
        raise ProtocolError(
            f"party '{self.name}': unknown secure-aggregation step {step!r} (one of {STEPS})"
        )

    def forget(self, query: str) -> None:
        with self._lock:
            self._pending.pop(query, None)

    def _query(self, spec: Mapping[str, Any]) -> str:
        query = spec.get("query")
        if not isinstance(query, str) or not query:
            raise ProtocolError(f"party '{self.name}': secure-aggregation step without a query id")
        return query
