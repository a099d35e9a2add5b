"""A party's analytics agent: answers QUERY tasks with sufficient statistics.

Like :class:`fedsilo.runtime.party.PartyAgent`, the agent is a route table
(:attr:`AnalyticsAgent.routes`, one QUERY route) served by :func:`fedsilo.protocol.serve.serve`:
:meth:`AnalyticsAgent.handle` takes and returns encoded
:class:`~fedsilo.protocol.messages.Message` bytes and never raises; a malformed task, a plan
that reaches outside the party's public schema, or a data problem becomes an error reply
naming the party. The party re-checks every received plan against its own copy of
the job (table, declared columns, categories, bounds, and the filter against the SQL subset)
before DuckDB sees it. What leaves: one ``(groups, statistics)`` float64 array, or, when the
job enables ``[privacy.secure_aggregation]``, only the protocol messages of
:mod:`fedsilo.analytics.secure` (public keys, encrypted shares, the masked encoded statistics,
share reveals): a party of such a job refuses a plain query.

Before any statistics leave, the party applies its **own** policy and budget
(:func:`fedsilo.analytics.policy.admit`, then its
:class:`~fedsilo.privacy.guard.PrivacyGuard`): the query's mechanism, its epsilon and its
minimum group size must be within the party's :class:`~fedsilo.analytics.config.QueryPolicy`,
and its cost is checked and charged to the party's ledger in one transaction when the
statistics leave (a plain reply; step ``mask`` under secure aggregation, with an early check,
charging nothing, at step ``keys``). The reply's ``privacy`` body reports the party's total.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from fedsilo.analytics.bodies import QueryTask
from fedsilo.analytics.config import AnalyticsJob, PrivacySettings, QueryPolicy
from fedsilo.analytics.fixed_point import FixedPoint
from fedsilo.analytics.local import PartyTable, connect, local_statistics
from fedsilo.analytics.plan import QueryPlan
from fedsilo.analytics.policy import admit
from fedsilo.analytics.secure import MAX_PENDING, SecureParty
from fedsilo.errors import FedsiloError, ProtocolError, RefusedError
from fedsilo.privacy.guard import PrivacyGuard
from fedsilo.privacy.ledger import Event
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.bodies import parse_body
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Route, serve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Price:
    """What one query costs this party (None: an exact answer its policy allows)."""

    spend: Event | None
    requested: PrivacySettings
    job: str
    sql: str


class AnalyticsAgent:
    """One party's answers to the queries of one analytics job, within its own policy.

    ``guard`` holds the party's budget and ledger, ``policy`` its own query rules; both come
    from the party's configuration, never from the task.
    """

    def __init__(
        self,
        name: str,
        table: PartyTable,
        job: AnalyticsJob,
        *,
        guard: PrivacyGuard,
        policy: QueryPolicy,
        threads: int = 1,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self._table = table
        self._job = job
        self._guard = guard
        self._policy = policy
        self._threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None  # opened on the first query
        self._con_lock = threading.Lock()
        self._secure = SecureParty(name, identity)  # secure-aggregation state, per query id
        self._prices: OrderedDict[str, _Price] = OrderedDict()  # secure queries, by query id
        self._lock = threading.Lock()
        self.routes: dict[TaskKind, Route] = {TaskKind.QUERY: self.query}
        self._serve = serve(name, self.routes, on_reply=guard.seal)

    def handle(self, data: bytes) -> bytes:
        """Answer one encoded task; never raises (see :func:`~fedsilo.protocol.serve.serve`)."""
        return self._serve(data)

    def query(self, task: Message) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One QUERY task (or one secure-aggregation step of it); raises on refusal."""
        return self.answer(task, parse_body(QueryTask, task, where=f"party {self.name!r}"))

    def answer(
        self, task: Message, parsed: QueryTask
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """:meth:`query` for a task whose body is already parsed (the deployed router's)."""
        spec = None if parsed.secagg is None else parsed.secagg.spec()
        if spec is not None and spec["step"] != "keys":
            return self._secure_step(spec)
        plan = parsed.query_plan(task, f"party {self.name!r}").check_against(self._job)
        sa = self._job.privacy.secure_aggregation
        if sa.enabled and spec is None:
            raise RefusedError(
                f"party '{self.name}' refuses to send its statistics in the clear: the job "
                "enables privacy.secure_aggregation (the coordinator must run it)"
            )
        price = self._price(task, plan, parsed.public_job(task, f"party {self.name!r}"), parsed.sql)
        stats = self._statistics(plan)
        body: dict[str, Any] = {"groups": int(stats.shape[0]), "statistics": int(stats.shape[1])}
        if spec is not None:
            fp = FixedPoint.for_plan(plan, sa.max_rows)
            body |= self._secure.start(spec, stats, fp, job_id=task.job_id)
            with self._lock:
                self._prices[str(spec["query"])] = price
                while len(self._prices) > MAX_PENDING:
                    self._prices.popitem(last=False)
            return body, {}
        body["privacy"] = self._charge(price)  # check and charge, then the statistics leave
        return body, {"stats": stats}

    def _price(self, task: Message, plan: QueryPlan, job: AnalyticsJob, sql: str) -> _Price:
        """The party's own decision on the privacy settings ``job`` asks for: policy (a refusal
        names the rule), then an early budget check that records nothing."""
        requested = job.privacy
        spend = admit(self._policy, self._guard, plan, requested, job.min_group_size)
        if spend is not None:
            self._guard.check_query(spend, requested.delta, requested.accounting)
        return _Price(spend, requested, task.job_id, sql)

    def _charge(self, price: _Price) -> dict[str, Any]:
        req = price.requested
        if price.spend is None:  # an exact answer the party's policy allows: nothing to charge
            budget = self._guard.budget(req.delta, req.accounting)
            return {
                "spent": self._guard.ledger.spent(budget),
                "budget": budget.max_epsilon,
                "delta": budget.delta,
                "cost": None,
            }
        return self._guard.charge_query(
            price.spend, req.delta, req.accounting, job=price.job, what=price.sql
        )

    def _statistics(self, plan: QueryPlan) -> np.ndarray:
        with self._con_lock:  # one DuckDB connection, one query at a time
            if self._con is None:
                self._con = connect(self._threads)
            return local_statistics(plan, self._table, party=self.name, con=self._con)

    def _secure_step(self, spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Steps after ``keys``. At ``mask`` the masked statistics are computed first (the
        neighbours' shares decrypted and checked), then the query is charged, then they leave:
        a step the party refuses (a forged or missing share, a substituted key) charges
        nothing. Once the masked statistics have left, the query stays charged whatever
        follows: the party cannot know whether they will be unmasked.
        """
        query = str(spec.get("query"))
        if spec["step"] != "mask":
            return self._secure.step(spec)
        with self._lock:
            price = self._prices.pop(query, None)
        if price is None:
            self._secure.forget(query)
            raise ProtocolError(
                f"party '{self.name}': no query {query} in progress (step 'mask' arrived "
                "without its 'keys' step, or the party process restarted)"
            )
        try:
            body, arrays = self._secure.step(spec)  # nothing has left the party yet
            privacy = self._charge(price)
        except FedsiloError:
            self._secure.forget(query)  # refused: this query's secrets go
            raise
        return body | {"privacy": privacy}, arrays
