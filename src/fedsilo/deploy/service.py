"""The gRPC servicer: authenticate every call, then hand it to the board or the job runner.

Party calls: ``Pull`` (long poll for the next task) and ``Push`` (a task's reply). Admin
calls: ``Submit`` (a job TOML), ``Status`` and ``Query`` (federated analytics). Nothing here trusts the caller: the identity
comes from :class:`~fedsilo.deploy.auth.Authenticator`, and a refused or malformed call ends
with a gRPC status and a logged reason, never an exception in the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import grpc

from fedsilo.deploy.auth import RETRY_AFTER_HEADER, Authenticator, Refusal
from fedsilo.deploy.grpc_transport import PartyBoard
from fedsilo.deploy.limits import CallLimiter, peer_address
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.errors import ConfigError, ErrorCode, FedsiloError

log = logging.getLogger(__name__)

WIRE_VERSION = 2  # 2: replies stream in chunks (Push)


class JobQueue(Protocol):
    def submit(self, job_toml: str) -> str: ...

    def restart(self, job_id: str) -> str: ...

    def status(self) -> list[pb.JobStatus]: ...


class QueryService(Protocol):
    def query(self, job_toml: str, sql: str) -> str: ...


QUERY_CODES = {
    ErrorCode.CONFIG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.BUDGET_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class CoordinatorService(pb_grpc.CoordinatorServicer):
    def __init__(
        self,
        board: PartyBoard,
        auth: Authenticator,
        jobs: JobQueue,
        *,
        poll_s: float,
        registered: list[str],
        limiter: CallLimiter,
        queries: QueryService | None = None,
    ) -> None:
        self._limits = limiter
        self._queries = queries
        self._board = board
        self._auth = auth
        self._jobs = jobs
        self._poll_s = poll_s
        self._registered = registered

    def _refuse(self, context: grpc.ServicerContext, address: str, exc: Refusal) -> None:
        if exc.code is not grpc.StatusCode.RESOURCE_EXHAUSTED:  # those the limiter logs
            self._limits.auth_failed(address)
            log.warning("refused a call from %s: %s", address, exc.reason)
        context.abort(exc.code, exc.reason)

    def _party(self, context: grpc.ServicerContext, claimed: str, version: int) -> str:
        address = peer_address(context.peer())
        try:
            self._limits.check_address(address)
            name = self._auth.party(context)
            if claimed != name:
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"request names party {claimed!r} but the credentials are for {name!r}",
                )
        except Refusal as exc:
            self._refuse(context, address, exc)
        if version != WIRE_VERSION:
            reason = (
                f"wire schema version {version}, the server speaks {WIRE_VERSION}: "
                "upgrade fedsilo on one side"
            )
            log.warning("refused a call of party '%s' from %s: %s", name, address, reason)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, reason)
        return name

    def _admin(self, context: grpc.ServicerContext) -> None:
        address = peer_address(context.peer())
        try:
            self._limits.check_address(address)
            self._auth.admin(context)
        except Refusal as exc:
            self._refuse(context, address, exc)

    @contextmanager
    def _limited(
        self, context: grpc.ServicerContext, name: str, *, poll: bool = False
    ) -> Iterator[None]:
        """One of the party's call slots for the ``with`` block, or RESOURCE_EXHAUSTED."""
        try:
            self._limits.acquire(name, poll=poll)
        except Refusal as exc:
            if exc.retry_after_s is not None:
                context.set_trailing_metadata(((RETRY_AFTER_HEADER, f"{exc.retry_after_s:.3f}"),))
            context.abort(exc.code, exc.reason)
        try:
            yield
        finally:
            self._limits.release(name, poll=poll)

    def Pull(self, request: pb.PullRequest, context: grpc.ServicerContext) -> pb.Task:
        name = self._party(context, request.party, request.schema_version)
        with self._limited(context, name, poll=True):
            return self._board.pull(name, self._poll_s, context.is_active)

    def Push(self, requests: Iterator[pb.Reply], context: grpc.ServicerContext) -> pb.Ack:
        first = next(requests, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an empty reply stream")
        name = self._party(context, first.party, first.schema_version)

        def chunks() -> Iterator[bytes]:
            yield first.payload
            for chunk in requests:
                if chunk.task_id not in ("", first.task_id):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a reply names two tasks")
                yield chunk.payload

        with self._limited(context, name):
            accepted, reason = self._board.push(name, first.task_id, first.total_bytes, chunks())
        if not accepted:
            log.warning("reply from party '%s' not accepted: %s", name, reason)
            if "exceeds" in reason:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
        return pb.Ack(accepted=accepted, reason=reason)

    def Heartbeat(self, request: pb.PullRequest, context: grpc.ServicerContext) -> pb.Ack:
        name = self._party(context, request.party, request.schema_version)
        with self._limited(context, name):
            self._board.heartbeat(name)
        return pb.Ack(accepted=True)

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> pb.SubmitReply:
        self._admin(context)
        try:
            if request.restart_job_id:
                job_id = self._jobs.restart(request.restart_job_id)
            else:
                job_id = self._jobs.submit(request.job_toml)
        except ConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.SubmitReply(job_id=job_id)

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryReply:
        self._admin(context)
        if self._queries is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server does not run queries")
        try:
            text = self._queries.query(request.job_toml, request.sql)
        except FedsiloError as exc:
            code = QUERY_CODES.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
            log.warning("query refused: %s", exc)
            context.abort(code, f"{type(exc).__name__}: {exc}")
        return pb.QueryReply(result_json=text)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        self._admin(context)
        return self.snapshot()

    def snapshot(self) -> pb.StatusReply:
        """Jobs and parties as ``fedsilo status`` and the status page show them."""
        online = set(self._board.online())
        seen = self._board.last_seen()
        refused = dict(self._limits.refused)
        parties = [
            pb.PartyStatus(
                name=p,
                online=p in online,
                last_seen_s_ago=seen.get(p, -1.0),
                refused_calls=refused.get(p, 0),
            )
            for p in self._registered
        ]
        return pb.StatusReply(jobs=self._jobs.status(), parties=parties)
