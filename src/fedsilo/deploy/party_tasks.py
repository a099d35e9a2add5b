"""What a party process answers: training tasks (PartyAgent) and analytics queries.

:class:`TaskRouter` is the party process's one handler: one
:func:`~fedsilo.protocol.serve.serve` over the union of the route tables of the party's roles
(each task is decoded once): QUERY to :class:`PartyAnalytics`, training kinds to the
:class:`~fedsilo.runtime.party.PartyAgent`, vertical kinds to the vertical agent.

:class:`PartyAnalytics` answers a query over the file that ``party.toml`` maps the job's table
to (``[analytics.tables]``). The query task carries the analytics job's public schema and
privacy settings; the party re-checks the plan against that schema (as
:class:`~fedsilo.analytics.handler.AnalyticsAgent` does), computes the query's privacy cost
itself from the plan and the job's privacy settings (it does not take the coordinator's word
for it), and checks it against its **own** ledger and ``[analytics] max_epsilon``. A query
over that budget is refused with an error reply naming the party; an answered query is charged
to the party's ledger when the statistics leave (whether or not the coordinator releases an
answer: the conservative choice). Under ``[privacy.secure_aggregation]`` the query is several
QUERY steps (:mod:`fedsilo.analytics.secure`): the budget is checked at step ``keys`` (before
the statistics are computed) and again at step ``mask``, and charged when the masked
statistics leave at step ``mask`` (from then on the other parties' reveals suffice for the
coordinator to unmask a sum that includes them); later steps go to the agent, keyed by query
id, that holds the query's protocol state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fedsilo.analytics.config import AnalyticsJob
from fedsilo.analytics.dp import NoisePlan, calibrate
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.ledger import Ledger
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.plan import QueryPlan
from fedsilo.analytics.secure import MAX_PENDING, secure_spec
from fedsilo.errors import ConfigError, FedsiloError, ProtocolError
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply, Route, Routes, refuse, serve
from fedsilo.runtime.party import TRAINING_KINDS
from fedsilo.vertical.agent import VERTICAL_KINDS

log = logging.getLogger(__name__)


class TaskRouter:
    """The party process's one handler: the union of its roles' route tables, one ``serve``.

    Training kinds go to the PartyAgent's routes, QUERY to analytics, vertical kinds to the
    vertical agent. A party without the matching data answers with a ``config`` error naming
    itself and the ``party.toml`` setting to add; malformed tasks get an error reply too.
    ``on_reply`` (the training agent's audit log) sees every reply that leaves.
    """

    def __init__(
        self,
        training: Routes | None,
        analytics: Routes | None,
        vertical: Routes | None = None,
        *,
        name: str = "",
        on_reply: Callable[[bytes], None] | None = None,
    ) -> None:
        def missing(what: str) -> Route:
            return refuse(ConfigError(f"party {name!r} has {what} to its party.toml"))

        no_training = missing('no training data: add data = "<file>"')
        no_vertical = missing('no vertical data: add [vertical] data = "<file>"')
        routes: dict[TaskKind, Route] = {
            **(training if training is not None else dict.fromkeys(TRAINING_KINDS, no_training)),
            **(vertical if vertical is not None else dict.fromkeys(VERTICAL_KINDS, no_vertical)),
            **(analytics or {}),
        }
        self._serve = serve(name, routes, on_reply=on_reply)

    def handle(self, data: bytes) -> bytes:
        return self._serve(data)


@dataclass(frozen=True)
class _Charge:
    """What a query will charge, and the agent holding its secure-aggregation state."""

    agent: AnalyticsAgent
    ledger: Ledger
    noise: NoisePlan
    budgets: dict[str, float]
    sql: str


class PartyAnalytics:
    """Answers QUERY tasks over this party's analytics tables, within its own budget."""

    def __init__(
        self,
        name: str,
        tables: dict[str, Path],
        ledger_dir: Path,
        max_epsilon: float,
        *,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self._identity = identity  # secure aggregation: signing key and roster
        self._tables = dict(tables)
        self._ledger_dir = ledger_dir
        self._max_epsilon = max_epsilon
        self._agents: dict[str, AnalyticsAgent] = {}  # per job (schema digest): one connection
        self._pending: OrderedDict[str, _Charge] = OrderedDict()  # secure queries, by query id
        self._lock = threading.Lock()
        self.routes: dict[TaskKind, Route] = {TaskKind.QUERY: self.query}
        self._serve = serve(name, self.routes)

    def handle(self, data: bytes) -> bytes:
        return self._serve(data)

    def query(self, task: Message) -> Reply:
        """One QUERY task: parse, check this party's own budget, answer, charge."""
        spec = secure_spec(task.body)
        if spec is not None and spec["step"] != "keys":
            return self._secure_step(task, spec)
        job, plan, sql = self._parse(task)
        agent = self._agent(job)
        ledger = Ledger(self._ledger_dir, job.privacy.delta, job.privacy.accounting)
        noise = calibrate(plan, job.privacy)
        budgets = {self.name: self._max_epsilon}
        ledger.check(budgets, noise, sql)  # raises naming this party
        reply = agent.query(task)
        if spec is None:
            self._charge(_Charge(agent, ledger, noise, budgets, sql))
        else:  # secure aggregation: charged when the masked statistics leave (step 'mask')
            with self._lock:
                self._pending[str(spec["query"])] = _Charge(agent, ledger, noise, budgets, sql)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
        return reply

    def _secure_step(self, task: Message, spec: dict[str, Any]) -> Reply:
        """A later secure-aggregation step: to the agent that started the query."""
        query, step = str(spec.get("query")), str(spec["step"])
        with self._lock:
            pending = self._pending.get(query)
        if pending is None:
            raise ProtocolError(
                f"party '{self.name}': no query {query} in progress (step '{step}' arrived "
                "without its 'keys' step, or the party process restarted)"
            )
        if step == "mask":  # re-check: another query may have spent budget in between
            try:
                pending.ledger.check(pending.budgets, pending.noise, pending.sql)
            except FedsiloError:
                with self._lock:
                    self._pending.pop(query, None)
                raise
        try:
            reply = pending.agent.query(task)
        except Exception:
            with self._lock:
                self._pending.pop(query, None)
            raise
        if step == "mask":
            self._charge(pending)
        if step == "unmask":
            with self._lock:
                self._pending.pop(query, None)
        return reply

    def _charge(self, c: _Charge) -> None:
        spent = c.ledger.charge(c.budgets, c.noise, c.sql)[self.name]
        log.info(
            "party %s answered a query; epsilon spent %.4g of %g",
            self.name,
            spent,
            self._max_epsilon,
        )

    def _parse(self, task: Message) -> tuple[AnalyticsJob, QueryPlan, str]:
        try:
            job = AnalyticsJob.model_validate(task.body["job"])
            plan = QueryPlan.from_json(task.body["plan"])
            sql = str(task.body.get("sql", ""))
        except KeyError as exc:
            raise ProtocolError(f"query task lacks {exc}; upgrade the coordinator") from None
        except (ValidationError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed query task: {exc}") from None
        plan.check_against(job)
        return job, plan, sql

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
        if key not in self._agents:
            table = PartyTable(str(path), path=path)
            agent = AnalyticsAgent(self.name, table, job, identity=self._identity)
            self._agents = {key: agent}  # keep the latest only
        return self._agents[key]
