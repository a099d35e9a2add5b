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
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import numpy as np

from fedsilo.analytics.config import AnalyticsJob
from fedsilo.analytics.fixed_point import FixedPoint
from fedsilo.analytics.local import PartyTable, connect, local_statistics
from fedsilo.analytics.plan import QueryPlan
from fedsilo.analytics.secure import SecureParty, secure_spec
from fedsilo.errors import ProtocolError, RefusedError
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Route, serve

log = logging.getLogger(__name__)


class AnalyticsAgent:
    def __init__(
        self,
        name: str,
        table: PartyTable,
        job: AnalyticsJob,
        *,
        threads: int = 1,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self._table = table
        self._job = job
        self._threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None  # opened on the first query
        self._secure = SecureParty(name, identity)  # secure-aggregation state, per query id
        self.routes: dict[TaskKind, Route] = {TaskKind.QUERY: self.query}
        self._serve = serve(name, self.routes)

    def handle(self, data: bytes) -> bytes:
        """Answer one encoded task; never raises (see :func:`~fedsilo.protocol.serve.serve`)."""
        return self._serve(data)

    def query(self, task: Message) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One QUERY task (or one secure-aggregation step of it); raises on refusal."""
        spec = secure_spec(task.body)
        if spec is not None and spec["step"] != "keys":
            return self._secure.step(spec)
        try:
            plan = QueryPlan.from_json(task.body["plan"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed query plan: {exc}") from None
        plan.check_against(self._job)
        sa = self._job.privacy.secure_aggregation
        if sa.enabled and spec is None:
            raise RefusedError(
                f"party '{self.name}' refuses to send its statistics in the clear: the job "
                "enables privacy.secure_aggregation (the coordinator must run it)"
            )
        if self._con is None:
            self._con = connect(self._threads)
        stats = local_statistics(plan, self._table, party=self.name, con=self._con)
        body = {"groups": int(stats.shape[0]), "statistics": int(stats.shape[1])}
        if spec is not None:
            fp = FixedPoint.for_plan(plan, sa.max_rows)
            return body | self._secure.start(spec, stats, fp, job_id=task.job_id), {}
        return body, {"stats": stats}
