"""The gRPC servicer: authenticate every call, then hand it to the board or the job runner.

Party calls: ``Pull`` (long poll for the next task) and ``Push`` (a task's reply). Admin
calls: ``Submit`` (a job TOML), ``Status`` and ``Query`` (federated analytics). Nothing here trusts the caller: the identity
comes from :class:`~fedsilo.deploy.auth.Authenticator`, and a refused or malformed call ends
with a gRPC status and a logged reason, never an exception in the server.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from fedsilo.deploy.auth import Authenticator, Refusal
from fedsilo.deploy.grpc_transport import PartyBoard
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.errors import ConfigError, ErrorCode, FedsiloError

log = logging.getLogger(__name__)

WIRE_VERSION = 1


class JobQueue(Protocol):
    def submit(self, job_toml: str) -> str: ...

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
        queries: QueryService | None = None,
    ) -> None:
        self._queries = queries
        self._board = board
        self._auth = auth
        self._jobs = jobs
        self._poll_s = poll_s
        self._registered = registered

    def _party(self, context: grpc.ServicerContext, claimed: str, version: int) -> str:
        try:
            name = self._auth.party(context)
        except Refusal as exc:
            log.warning("refused a party call from %s: %s", context.peer(), exc.reason)
            context.abort(exc.code, exc.reason)
        if claimed != name:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"request names party {claimed!r} but the credentials are for {name!r}",
            )
        if version != WIRE_VERSION:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"wire schema version {version}, the server speaks {WIRE_VERSION}: "
                "upgrade fedsilo on one side",
            )
        return name

    def _admin(self, context: grpc.ServicerContext) -> None:
        try:
            self._auth.admin(context)
        except Refusal as exc:
            log.warning("refused an admin call from %s: %s", context.peer(), exc.reason)
            context.abort(exc.code, exc.reason)

    def Pull(self, request: pb.PullRequest, context: grpc.ServicerContext) -> pb.Task:
        name = self._party(context, request.party, request.schema_version)
        return self._board.pull(name, self._poll_s, context.is_active)

    def Push(self, request: pb.Reply, context: grpc.ServicerContext) -> pb.Ack:
        name = self._party(context, request.party, request.schema_version)
        accepted, reason = self._board.push(name, request.task_id, request.payload)
        if not accepted:
            log.warning("reply from party '%s' not accepted: %s", name, reason)
        return pb.Ack(accepted=accepted, reason=reason)

    def Heartbeat(self, request: pb.PullRequest, context: grpc.ServicerContext) -> pb.Ack:
        name = self._party(context, request.party, request.schema_version)
        self._board.heartbeat(name)
        return pb.Ack(accepted=True)

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> pb.SubmitReply:
        self._admin(context)
        try:
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
        online = set(self._board.online())
        seen = self._board.last_seen()
        parties = [
            pb.PartyStatus(name=p, online=p in online, last_seen_s_ago=seen.get(p, -1.0))
            for p in self._registered
        ]
        return pb.StatusReply(jobs=self._jobs.status(), parties=parties)
