"""One way for a party role to answer tasks: a route table turned into a bytes handler.

A role (training agent, analytics agent, vertical agent, the party process's router) is a
table ``{TaskKind: route}``; a route takes the decoded task and returns either a whole
:class:`Message` or ``(body, arrays)`` (the reply then has the task's kind, job and round and
the party's name). :func:`serve` turns the table into ``bytes -> bytes``::

    handler = serve("bank-a", {TaskKind.DESCRIBE: describe, TaskKind.FIT: fit})
    reply = handler(task_bytes)      # never raises

It decodes each task once, dispatches on its kind, and encodes every failure one way: a
:class:`~fedsilo.protocol.messages.Fault` with the raised error's
:class:`~fedsilo.errors.ErrorCode` (``internal`` for an unexpected exception, which is logged
with its traceback; a refusal is logged as a warning, one for the privacy budget at INFO). A
route signals failure by raising; it never builds an error reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from fedsilo.errors import ErrorCode, FedsiloError, UnsupportedError
from fedsilo.protocol.messages import DEFAULT_MAX_MESSAGE_BYTES, Fault, Message, TaskKind

log = logging.getLogger(__name__)

Body = Mapping[str, Any] | BaseModel
Reply = Message | tuple[Body, Mapping[str, np.ndarray]]
Route = Callable[[Message], Reply]
Routes = Mapping[TaskKind, Route]
BytesHandler = Callable[[bytes], bytes]


def body_json(body: Body) -> dict[str, Any]:
    """A reply body as JSON-ready data (typed bodies are dumped in JSON mode)."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", by_alias=True)
    return dict(body)


def serve(
    party: str,
    routes: Routes,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    on_reply: Callable[[bytes], bytes | None] | None = None,
) -> BytesHandler:
    """The party's ``bytes -> bytes`` handler over ``routes``; it never raises.

    ``on_reply`` sees every reply's bytes before they leave; if it returns bytes, those leave
    instead: the party's :meth:`~fedsilo.privacy.guard.PrivacyGuard.seal` adds its signed
    anchor and appends the reply to its audit log.
    """
    table = dict(routes)
    answers = ", ".join(sorted(k.value for k in table)) or "nothing"

    def reply_to(task: Message) -> Message:
        route = table.get(task.kind)
        if route is None:
            raise UnsupportedError(
                f"party {party!r} does not answer '{task.kind.value}' tasks (it answers: {answers})"
            )
        out = route(task)
        if isinstance(out, Message):
            return out
        body, arrays = out
        return Message(task.kind, task.job_id, task.round, party, body_json(body), dict(arrays))

    def fault_reply(task: Message | None, fault: Fault) -> bytes:
        if task is None:  # undecodable: nothing to echo
            return Message(TaskKind.DESCRIBE, "", -1, party, fault=fault).encode()
        return Message(task.kind, task.job_id, task.round, party, fault=fault).encode()

    def answer(data: bytes) -> bytes:
        task: Message | None = None
        try:
            task = Message.decode(data, max_bytes=max_bytes)
            return reply_to(task).encode()
        except FedsiloError as exc:
            what = "malformed task" if task is None else f"{task.kind.value} round {task.round}"
            # A refusal for the budget is the party's policy at work, in its audit log; the
            # coordinator that asked warns what the job does about it (a simulation is one
            # process: one warning). Any other refusal is a problem worth a warning here.
            level = logging.INFO if exc.code is ErrorCode.BUDGET_EXHAUSTED else logging.WARNING
            log.log(level, "party %s refused %s: %s", party, what, exc)
            text = f"malformed task: {exc}" if task is None else str(exc)
            return fault_reply(task, Fault(exc.code, text))
        except Exception as exc:  # a party must answer, whatever broke
            what = "a task" if task is None else f"{task.kind.value} round {task.round}"
            log.exception("party %s failed on %s", party, what)
            return fault_reply(task, Fault(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    def handle(data: bytes) -> bytes:
        reply = answer(data)
        sealed = None if on_reply is None else on_reply(reply)
        return reply if sealed is None else sealed

    return handle


def refuse(error: FedsiloError) -> Route:
    """A route that always answers with ``error`` (a role this party does not play)."""

    def route(task: Message) -> Reply:
        raise error

    return route
