"""A party process's analytics role: QUERY tasks over the party's own tables.

:class:`PartyAnalytics` answers a query over the file that ``party.toml`` maps the job's table
to (``[analytics.tables]``), through an :class:`~fedsilo.analytics.handler.AnalyticsAgent`
built with the party's **own** guard (its one privacy ledger and budget, ``[privacy]``) and
query policy (``[analytics.policy]``): the task's schema is used to check the plan, its privacy
settings only as the *request* that the party's policy and budget accept or refuse (see
:mod:`fedsilo.analytics.policy`). Under ``[privacy.secure_aggregation]`` a query is several
QUERY steps (:mod:`fedsilo.analytics.secure`); later steps go to the agent, keyed by query id,
that holds the query's protocol state and its pending charge.

It needs the ``analytics`` extra (the SQL parser): the party process imports this module only
for a party that declares analytics tables, after checking the extra is installed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

from fedsilo.analytics.bodies import QueryTask
from fedsilo.analytics.config import AnalyticsJob, QueryPolicy
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.secure import MAX_PENDING
from fedsilo.errors import ProtocolError
from fedsilo.privacy.guard import PrivacyGuard
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.bodies import parse_body
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply, Route, serve


class PartyAnalytics:
    """Answers QUERY tasks over this party's analytics tables, within its own policy and budget."""

    def __init__(
        self,
        name: str,
        tables: dict[str, Path],
        guard: PrivacyGuard,
        policy: QueryPolicy,
        *,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self._identity = identity  # secure aggregation: signing key and roster
        self._tables = dict(tables)
        self._guard = guard
        self._policy = policy
        self._agents: dict[str, AnalyticsAgent] = {}  # per job (schema digest): one connection
        self._by_query: OrderedDict[str, AnalyticsAgent] = OrderedDict()  # secure queries
        self._lock = threading.Lock()
        self.routes: dict[TaskKind, Route] = {TaskKind.QUERY: self.query}
        self._serve = serve(name, self.routes, on_reply=guard.seal)

    def handle(self, data: bytes) -> bytes:
        return self._serve(data)

    def query(self, task: Message) -> Reply:
        """One QUERY task (or a later secure-aggregation step) to the agent for its job."""
        body = parse_body(QueryTask, task, where=f"party {self.name!r}")
        spec = body.secagg
        if spec is not None and spec.step != "keys":
            with self._lock:
                agent = self._by_query.get(spec.query)
            if agent is None:
                raise ProtocolError(
                    f"party '{self.name}': no query {spec.query} in progress (step "
                    f"'{spec.step}' arrived without its 'keys' step, or the party process "
                    "restarted)"
                )
            return agent.answer(task, body)
        agent = self._agent(body.public_job(task, f"party {self.name!r}"))
        if spec is not None:
            with self._lock:
                self._by_query[spec.query] = agent
                while len(self._by_query) > MAX_PENDING:
                    self._by_query.popitem(last=False)
        return agent.answer(task, body)

    def _agent(self, job: AnalyticsJob) -> AnalyticsAgent:
        path = self._tables.get(job.table)
        if path is None:
            held = ", ".join(sorted(self._tables)) or "none"
            raise ProtocolError(
                f"party '{self.name}' holds no analytics table {job.table!r} (tables: {held}); "
                f"map it to a file under [analytics.tables] in party.toml"
            )
        schema = json.dumps(job.model_dump(mode="json"), sort_keys=True)
        key = hashlib.sha256(schema.encode()).hexdigest()
        with self._lock:
            if key not in self._agents:
                table = PartyTable(str(path), path=path)
                agent = AnalyticsAgent(
                    self.name,
                    table,
                    job,
                    guard=self._guard,
                    policy=self._policy,
                    identity=self._identity,
                )
                self._agents = {key: agent}  # keep the latest only
            return self._agents[key]
