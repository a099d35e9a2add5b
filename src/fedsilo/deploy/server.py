"""``fedsilo server``: the coordinator process.

Listens on ``listen`` with TLS (server certificate; with ``tls.client_ca`` the TLS layer also
demands a client certificate signed by that CA, and every call's certificate CN must be the
party's name). Plaintext needs ``insecure=True`` (``--insecure``), which logs a warning. Tasks
the server sends are limited to ``max_message_mb``; what it receives to one chunk
(``limits.chunk_kb``) per gRPC message: a reply streams in chunks and is refused once past its
task's limit (:func:`~fedsilo.deploy.grpc_transport.reply_limit`), never buffered whole. Every
party's calls are limited (:mod:`fedsilo.deploy.limits`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from fedsilo.deploy.auth import Authenticator
from fedsilo.deploy.config import ServerConfig
from fedsilo.deploy.grpc_transport import PartyBoard
from fedsilo.deploy.jobs import JobRunner
from fedsilo.deploy.limits import CallLimiter
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.deploy.queries import QueryRunner
from fedsilo.deploy.service import CoordinatorService
from fedsilo.deploy.status_view import StatusPage
from fedsilo.errors import ConfigError
from fedsilo.runtime.store import JobStore

log = logging.getLogger(__name__)

RECEIVE_SLACK = 64 * 1024  # a chunk's envelope, a job TOML, a query: all well below this

INSECURE_WARNING = (
    "running WITHOUT TLS (--insecure): tokens, models and updates cross the network in "
    "plaintext. Use this only on a trusted loopback for testing."
)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    assert config.tls is not None
    tls = config.tls
    pair = (_read(tls.key, "tls.key"), _read(tls.cert, "tls.cert"))
    if tls.client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read(tls.client_ca, "tls.client_ca"), require_client_auth=True
    )


class Server:
    """The gRPC server, its party board and its job runner."""

    def __init__(self, config: ServerConfig, *, insecure: bool = False) -> None:
        if config.tls is None and not insecure:
            raise ConfigError(
                "server.toml has no [tls] section; give tls.cert and tls.key (make them with "
                "`fedsilo certs`), or pass --insecure for a plaintext test on a trusted network"
            )
        self.config = config
        self.insecure = config.tls is None
        registered = [p.name for p in config.parties if not p.revoked]
        limits = config.limits
        self.board = PartyBoard(
            liveness_s=config.liveness_s,
            max_message_bytes=config.max_message_bytes,
            reply_size_factor=limits.reply_size_factor,
        )
        store = JobStore(config.state_path)
        self.jobs = JobRunner(
            self.board,
            config.run_dir,
            registered,
            wait_for_parties_s=config.wait_for_parties_s,
            store=store,
            retry_backoff_s=config.retry_backoff_s,
        )
        mtls = config.tls is not None and config.tls.client_ca is not None
        auth = Authenticator(config.parties, config.admin_token_sha256, mtls=mtls)
        self.limiter = CallLimiter(limits, len(registered))
        self.service = CoordinatorService(
            self.board,
            auth,
            self.jobs,
            poll_s=config.poll_s,
            registered=registered,
            limiter=self.limiter,
            queries=QueryRunner(self.board, config.run_dir, registered, store),
        )
        # Threads for every poll that may wait, plus room for the quick calls; calls past
        # twice that are refused by gRPC itself instead of queueing without bound.
        workers = self.limiter.waiting_polls + len(registered) + 16
        self._grpc = grpc.server(
            ThreadPoolExecutor(max_workers=workers),
            options=[
                ("grpc.max_receive_message_length", limits.chunk_kb * 1024 + RECEIVE_SLACK),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ],
            maximum_concurrent_rpcs=2 * workers,
        )
        pb_grpc.add_CoordinatorServicer_to_server(self.service, self._grpc)  # type: ignore[no-untyped-call]
        if self.insecure:
            log.warning(INSECURE_WARNING)
            self.port = self._grpc.add_insecure_port(config.listen)
        else:
            self.port = self._grpc.add_secure_port(config.listen, server_credentials(config))
        if self.port == 0:
            raise ConfigError(f"cannot listen on {config.listen!r}: address in use or invalid")
        self.page = None
        if config.status_page is not None:
            self.page = StatusPage(
                config.status_page,
                self.service.snapshot,
                config.admin_token_sha256,
                self.limiter,
                server=config.listen,
            )

    def start(self) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        if self.config.job is not None:
            text = _read(self.config.job, "job").decode("utf-8")
            self.jobs.submit(text, source=str(self.config.job))
        self._grpc.start()
        self.jobs.start()
        if self.page is not None:
            self.page.start()
        log.info("fedsilo server listening on %s (port %d)", self.config.listen, self.port)

    def wait(self) -> None:
        self._grpc.wait_for_termination()

    def stop(self, grace_s: float = 1.0) -> None:
        if self.page is not None:
            self.page.stop()
        self.jobs.stop()
        self._grpc.stop(grace_s).wait()
