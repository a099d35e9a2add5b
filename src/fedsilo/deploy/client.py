"""Admin calls to a running server: ``fedsilo submit``, ``status`` and ``query --server``.

A failed call raises :class:`~fedsilo.errors.AdminCallError` with gRPC's code and details,
except where those mislead: a refused TLS handshake is ``UNAVAILABLE`` with a low-level SSL
string, and a server requiring mutual TLS closes the connection of a client that gave no
certificate, which gRPC calls "Socket closed". For an ``UNAVAILABLE`` from a server that
listens, the error is :func:`~fedsilo.deploy.tls_diagnosis.diagnose`'s sentence when it finds
the problem (the server's certificate from another CA than ``--ca``, for another name, expired;
the admin's own certificate; none given where one is required), with the fix in the admin
command's options (:data:`~fedsilo.deploy.tls_diagnosis.ADMIN_FLAGS`).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from fedsilo.deploy.auth import AUTH_HEADER
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.errors import AdminCallError

# gRPC codes of a call that may succeed if made again: the server down or restarting, or slow
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


class AdminClient:
    def __init__(
        self,
        address: str,
        token: str,
        *,
        ca: Path | None,
        cert: Path | None = None,
        key: Path | None = None,
        server_name: str | None = None,
        insecure: bool = False,
    ) -> None:
        self._address = address
        self._ca = None if insecure else ca  # TLS: a refusal may be diagnosed
        self._cert = cert
        self._server_name = server_name
        self._channel = open_channel(
            address,
            ca=ca,
            cert=cert,
            key=key,
            server_name=server_name,
            insecure=insecure,
            ca_setting="pass --ca CA.pem (the consortium CA that signed the server's certificate)",
        )
        self._stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = ((AUTH_HEADER, f"Bearer {token}"),)

    def close(self) -> None:
        self._channel.close()

    def submit(self, job_toml: str = "", *, restart: str = "", timeout_s: float = 30.0) -> str:
        """Submit a job TOML, or with ``restart`` run a failed job again; the job's id."""
        request = pb.SubmitRequest(job_toml=job_toml, restart_job_id=restart)
        try:
            reply = self._stub.Submit(request, metadata=self._metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise self._error("submit", exc) from None
        return str(reply.job_id)

    def status(self, *, timeout_s: float = 30.0) -> pb.StatusReply:
        try:
            reply: pb.StatusReply = self._stub.Status(
                pb.StatusRequest(), metadata=self._metadata, timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise self._error("status", exc) from None
        return reply

    def query(self, job_toml: str, sql: str, *, timeout_s: float = 660.0) -> str:
        """The answer as JSON (:meth:`~fedsilo.analytics.run.QueryResult.to_json`)."""
        try:
            reply = self._stub.Query(
                pb.QueryRequest(job_toml=job_toml, sql=sql),
                metadata=self._metadata,
                timeout=timeout_s,
            )
        except grpc.RpcError as exc:
            raise self._error("query", exc) from None
        return str(reply.result_json)

    def _error(self, call: str, exc: grpc.RpcError) -> AdminCallError:
        """The error of a failed call: typed ``transient`` when asking again may succeed."""
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        if code == "UNAVAILABLE":
            problem = self._tls_problem(str(details))
            if problem is not None:  # a certificate or TLS setting: asking again cannot help
                return AdminCallError(f"{call} on {self._address} failed: {problem}")
        return AdminCallError(
            f"{call} on {self._address} failed ({code}): {details}", transient=code in TRANSIENT
        )

    def _tls_problem(self, details: str) -> str | None:
        """Why the server refused this client's TLS, worded for the admin options, or None
        (plaintext, a server that is down, or nothing found)."""
        if self._ca is None:
            return None
        if "connection refused" in details.lower():  # nothing listens: the server is down
            return None
        from fedsilo.deploy.tls_diagnosis import ADMIN_FLAGS, diagnose  # cryptography

        return diagnose(
            self._address,
            ca=self._ca,
            cert=self._cert,
            server_name=self._server_name,
            wording=ADMIN_FLAGS,
        )
