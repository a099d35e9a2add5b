"""What a party process answers: training tasks (PartyAgent) and analytics queries.

:class:`TaskRouter` is the party process's one handler. It reads a task's kind from the
message header only (the arrays are not decoded twice) and hands QUERY tasks to
:class:`PartyAnalytics`, everything else to the :class:`~fedsilo.runtime.party.PartyAgent`.

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
from fedsilo.errors import FedsiloError, ProtocolError
from fedsilo.runtime.messages import Message, TaskKind
from fedsilo.runtime.transport import Handler
from fedsilo.vertical.agent import VERTICAL_KINDS

log = logging.getLogger(__name__)


def peek_kind(data: bytes) -> TaskKind | None:
    """The task kind from a message's JSON header, or None if it cannot be read."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        if header_len <= 0 or header_len > len(data) - 8:
            return None
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        return TaskKind(json.loads(meta["fedsilo"])["kind"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class TaskRouter:
    """Training kinds to the PartyAgent, QUERY to analytics, vertical kinds to the vertical agent.

    A party without the matching data answers with an error naming itself and the
    ``party.toml`` setting to add; malformed tasks get an error reply too.
    """

    def __init__(
        self,
        training: Handler | None,
        analytics: Handler | None,
        vertical: Handler | None = None,
        *,
        name: str = "",
    ) -> None:
        self._training = training
        self._analytics = analytics
        self._vertical = vertical
        self._name = name

    def handle(self, data: bytes) -> bytes:
        kind = peek_kind(data)
        if kind is TaskKind.QUERY and self._analytics is not None:
            return self._analytics.handle(data)
        if kind in VERTICAL_KINDS:
            if self._vertical is not None:
                return self._vertical.handle(data)
            return self._refuse(data, 'no vertical data: add [vertical] data = "<file>"')
        if self._training is not None:
            return self._training.handle(data)  # also answers malformed tasks with an error
        return self._refuse(data, 'no training data: add data = "<file>"')

    def _refuse(self, data: bytes, why: str) -> bytes:
        text = f"party {self._name!r} has {why} to its party.toml"
        try:
            task = Message.decode(data)
        except ProtocolError as exc:
            text = f"party {self._name!r}: malformed task: {exc}"
            task = Message(TaskKind.DESCRIBE, "", -1, self._name)
        log.warning("%s", text)
        body = {"error": text, "error_type": "ConfigError"}
        return Message(task.kind, task.job_id, task.round, self._name, body).encode()


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
        self, name: str, tables: dict[str, Path], ledger_dir: Path, max_epsilon: float
    ) -> None:
        self.name = name
        self._tables = dict(tables)
        self._ledger_dir = ledger_dir
        self._max_epsilon = max_epsilon
        self._agents: dict[str, AnalyticsAgent] = {}  # per job (schema digest): one connection
        self._pending: OrderedDict[str, _Charge] = OrderedDict()  # secure queries, by query id
        self._lock = threading.Lock()

    def handle(self, data: bytes) -> bytes:
        try:
            task = Message.decode(data)
        except ProtocolError as exc:
            return self._error("", -1, f"malformed task: {exc}", "ProtocolError")
        try:
            spec = secure_spec(task.body)
            if spec is not None and spec["step"] != "keys":
                return self._secure_step(task, spec, data)
            job, plan, sql = self._parse(task)
            agent = self._agent(job)
            ledger = Ledger(self._ledger_dir, job.privacy.delta, job.privacy.accounting)
            noise = calibrate(plan, job.privacy)
            budgets = {self.name: self._max_epsilon}
            ledger.check(budgets, noise, sql)  # raises naming this party
        except FedsiloError as exc:
            log.warning("party %s refused a query: %s", self.name, exc)
            return self._error(task.job_id, task.round, str(exc), type(exc).__name__)
        reply = agent.handle(data)
        if Message.decode(reply).error is not None:
            return reply
        if spec is None:
            self._charge(_Charge(agent, ledger, noise, budgets, sql))
        else:  # secure aggregation: charged when the masked statistics leave (step 'mask')
            with self._lock:
                self._pending[str(spec["query"])] = _Charge(agent, ledger, noise, budgets, sql)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
        return reply

    def _secure_step(self, task: Message, spec: dict[str, Any], data: bytes) -> bytes:
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
        reply = pending.agent.handle(data)
        failed = Message.decode(reply).error is not None
        if step == "mask" and not failed:
            self._charge(pending)
        if step == "unmask" or failed:
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
            self._agents = {key: AnalyticsAgent(self.name, table, job)}  # keep the latest only
        return self._agents[key]

    def _error(self, job_id: str, rnd: int, text: str, error_type: str) -> bytes:
        body: dict[str, Any] = {"error": text, "error_type": error_type}
        return Message(TaskKind.QUERY, job_id, rnd, self.name, body).encode()
