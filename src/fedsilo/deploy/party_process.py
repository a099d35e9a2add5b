"""``fedsilo party``: an organization's agent, dialling out to the coordinator.

The process loads and validates its data locally (a CSV or Parquet file), then loops: long-poll
the server for a task (``Pull``), answer it with the same
:meth:`~fedsilo.runtime.party.PartyAgent.handle` the simulation uses, send the reply
(``Push``). Only what ``PartyAgent`` puts in replies leaves: schema, summable statistics,
model parameters and metrics. A heartbeat thread tells the server it is alive every
``heartbeat_s``, busy or idle, on its own schedule. Replies stream to the server in chunks.
When the coordinator is unreachable it retries with exponential backoff (with jitter); when the
server refuses its credentials it stops with the server's reason, because retrying cannot help.
A refused TLS handshake is diagnosed (:mod:`fedsilo.deploy.tls_diagnosis`: unknown CA,
expired or not-yet-valid certificate, name mismatch, no client certificate where the server
requires one) and logged as such, and after ``tls_attempts`` of them in a row the party stops
with that diagnosis. Before it answers any task, ``fedsilo party`` sets torch's threads to
party.toml's ``threads`` (:func:`use_threads`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import torch

from fedsilo.data.typed import read_raw
from fedsilo.deploy.auth import AUTH_HEADER, PARTY_HEADER, RETRY_AFTER_HEADER
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.config import PartyProcessConfig
from fedsilo.deploy.party_tasks import TaskRouter
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.deploy.service import WIRE_VERSION
from fedsilo.deploy.tls_diagnosis import PARTY_TOML, diagnose, is_handshake_failure
from fedsilo.errors import ConfigError, PartyRefusedError
from fedsilo.extras import require
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.secagg.identity import load_identity
from fedsilo.privacy.secagg.params import ThreatModel
from fedsilo.runtime.party import LocalData, PartyAgent
from fedsilo.runtime.transport import Handler

log = logging.getLogger(__name__)

PULL_TIMEOUT_S = 120.0
CHUNK_BYTES = 1024 * 1024  # a reply streams in chunks of this size (the server's chunk limit)
PUSH_ATTEMPTS = 5  # sends of one reply, refused under a passing limit or server unreachable
MAX_PUSH_WAIT_S = 5.0  # the longest wait before a reply is sent again on the server's word
FATAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def use_threads(config: PartyProcessConfig) -> None:
    """Compute with ``threads`` torch threads (party.toml, default 1) from now on.

    A simulation trains every party on one torch thread
    (:func:`fedsilo.simulation.one_torch_thread`): a party on one thread sums in the same order
    and trains the simulation's model bit for bit; on more threads its weights may differ by
    ~1e-7. Torch's thread count is the process's, so the process that runs the party (``fedsilo
    party``) calls this once, after it has read the party's files (so a mistake there is
    reported alone) and before it answers any task.
    """
    torch.set_num_threads(config.threads)
    log.info("party %s: torch computes on %d thread(s)", config.name, torch.get_num_threads())


def load_agent(config: PartyProcessConfig) -> Handler:
    """The party's handler over its local files (read and checked before connecting).

    One :class:`PrivacyGuard` holds the party's own privacy settings (``[privacy]``: one budget
    and one ledger for training and queries, the audit log, the identity key that signs its
    anchors). Training tasks go to a :class:`PartyAgent`; QUERY tasks to its analytics tables
    under its ``[analytics.policy]``, if it declares any; vertical tasks to a
    :class:`~fedsilo.vertical.agent.VerticalPartyAgent` over ``[vertical] data`` (it keeps its
    model parts under ``[vertical] models``). Those two roles need their extras: a party that
    declares one where the extra is missing stops here, before connecting, with the pip line.
    """
    sa = config.secure_aggregation
    identity = None
    if sa.identity_key is not None and sa.roster is not None:
        threat = ThreatModel(sa.dropout_rate, sa.corruption_rate)
        identity = load_identity(config.name, sa.identity_key, sa.roster, threat)
    guard = PrivacyGuard(
        config.name,
        PartyPrivacy(
            max_epsilon=config.privacy.max_epsilon,
            delta=config.privacy.delta,
            accounting=config.privacy.accounting,
            ledger=config.ledger_path,
            audit_log=config.privacy.audit_log,
            signing_key=None if identity is None else identity.signing_key,
            client_dp=config.privacy.client_dp,
        ),
    )
    agent = None
    if config.data is not None:
        table = read_raw(config.data, party=config.name)
        agent = PartyAgent(
            config.name, LocalData(str(config.data), table=table), guard, identity=identity
        )
    analytics = None
    if config.analytics.tables:
        for name, path in config.analytics.tables.items():
            if not path.is_file():
                raise ConfigError(
                    f"party {config.name!r}: analytics table {name!r} file {path} does not "
                    "exist; fix [analytics.tables] in party.toml"
                )
        require("analytics", f"party {config.name!r} ([analytics.tables] in party.toml)")
        from fedsilo.deploy.party_analytics import PartyAnalytics  # the extra's SQL parser

        analytics = PartyAnalytics(
            config.name,
            config.analytics.tables,
            guard,
            config.analytics.policy,
            identity=identity,
        )
    vertical = None
    files = {"data": config.vertical.data, "score_data": config.vertical.score_data}
    for key, file in files.items():
        if file is not None and not file.is_file():
            raise ConfigError(
                f"party {config.name!r}: vertical {key} file {file} does not exist; fix "
                f"[vertical] {key} in party.toml"
            )
    if any(file is not None for file in files.values()):
        require("vertical", f"party {config.name!r} ([vertical] in party.toml)")
        from fedsilo.vertical.agent import VerticalPartyAgent  # the extra's PSI and HE

        vertical = VerticalPartyAgent(
            config.name,
            path=config.vertical.data,
            models_dir=config.models_dir,
            score_path=config.vertical.score_data,
            share_feature_names=config.vertical.share_feature_names,
        )
    return TaskRouter(
        None if agent is None else agent.routes,
        None if analytics is None else analytics.routes,
        None if vertical is None else vertical.routes,
        name=config.name,
        on_reply=guard.seal,
    )


class PartyProcess:
    """Pull tasks, handle them, push replies; reconnect with backoff."""

    def __init__(
        self,
        config: PartyProcessConfig,
        handler: Handler,
        *,
        insecure: bool = False,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.config = config
        self._handler = handler
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._channel = open_channel(
            config.server,
            ca=config.ca,
            cert=config.cert,
            key=config.key,
            server_name=config.server_name,
            insecure=insecure,
            max_message_bytes=config.max_message_bytes,
            max_backoff_s=config.max_backoff_s,
        )
        self._stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
        metadata = [(PARTY_HEADER, config.name)]
        token = config.read_token()
        if token is not None:
            metadata.append((AUTH_HEADER, f"Bearer {token}"))
        self._metadata = tuple(metadata)
        self.tasks_handled = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        beat = threading.Thread(target=self._heartbeat, name="fedsilo-heartbeat", daemon=True)
        beat.start()
        try:
            self._loop()
        finally:
            self._stop.set()
            beat.join(self.config.heartbeat_s + 1)
            self._channel.close()

    def _loop(self) -> None:
        backoff = 0.5
        connected = False
        handshakes = 0  # refused TLS handshakes in a row
        while not self._stop.is_set():
            try:
                task = self._stub.Pull(
                    pb.PullRequest(schema_version=WIRE_VERSION, party=self.config.name),
                    metadata=self._metadata,
                    timeout=PULL_TIMEOUT_S,
                )
                if not connected:
                    log.info("party %s connected to %s", self.config.name, self.config.server)
                    connected = True
                backoff, handshakes = 0.5, 0
                if task.task_id:
                    self._answer(task)
            except grpc.RpcError as exc:
                code, details = _status(exc)
                if code in FATAL:
                    raise PartyRefusedError(
                        f"the coordinator at {self.config.server} refused party "
                        f"{self.config.name!r}: {details}"
                    ) from None
                connected = False
                wait = backoff * (1 + random.random() / 2)
                problem = self._tls_problem(code, details)
                if problem is not None:
                    handshakes += 1
                    if handshakes >= self.config.tls_attempts:
                        raise PartyRefusedError(
                            f"party {self.config.name!r} cannot connect to {self.config.server}"
                            f" (TLS handshake refused {handshakes} times): {problem}"
                        ) from None
                    log.error(
                        "party %s: TLS handshake with %s refused (%d of %d): %s; retrying "
                        "in %.1f s",
                        self.config.name,
                        self.config.server,
                        handshakes,
                        self.config.tls_attempts,
                        problem,
                        wait,
                    )
                else:
                    log.warning(
                        "party %s: coordinator unreachable (%s: %s); retrying in %.1f s",
                        self.config.name,
                        getattr(code, "name", code),
                        details,
                        wait,
                    )
                self._sleep(wait)
                backoff = min(backoff * 2, self.config.max_backoff_s)

    def _tls_problem(self, code: grpc.StatusCode | None, details: str) -> str | None:
        """The diagnosis of a refused TLS handshake, or None when it is not one.

        A server that refuses this party's certificate, or its lack of one (no `cert` under
        mutual TLS), just closes the socket, which looks like any dropped connection; so every
        UNAVAILABLE is diagnosed, and counts as a TLS refusal only if a certificate problem is
        found (a missing certificate only when a TLS probe sees the server close the
        connection for it; a server that is down is not one) or gRPC says the handshake failed.
        """
        if code is not grpc.StatusCode.UNAVAILABLE or self.config.ca is None:
            return None
        found = diagnose(
            self.config.server,
            ca=self.config.ca,
            cert=self.config.cert,
            server_name=self.config.server_name,
            wording=PARTY_TOML,
        )
        if found is None and is_handshake_failure(details):
            return f"the TLS handshake failed ({details}); check `ca`, `cert` and `key`"
        return found

    def _heartbeat(self) -> None:
        """Tell the server this party is alive every ``heartbeat_s``, busy or idle."""
        request = pb.PullRequest(schema_version=WIRE_VERSION, party=self.config.name)
        every = self.config.heartbeat_s
        while not self._stop.wait(every):
            with contextlib.suppress(grpc.RpcError):  # the main loop reports connection trouble
                self._stub.Heartbeat(request, metadata=self._metadata, timeout=max(every, 5.0))

    def _chunks(self, task_id: str, payload: bytes) -> Iterator[pb.Reply]:
        view = memoryview(payload)
        yield pb.Reply(
            schema_version=WIRE_VERSION,
            party=self.config.name,
            task_id=task_id,
            payload=bytes(view[:CHUNK_BYTES]),
            total_bytes=len(payload),
        )
        for start in range(CHUNK_BYTES, len(payload), CHUNK_BYTES):
            yield pb.Reply(payload=bytes(view[start : start + CHUNK_BYTES]))

    def _push(self, task: pb.Task, payload: bytes) -> pb.Ack | None:
        """Deliver a reply; None if the server refused it for good.

        A reply is work done (a round's training, a masked input): it is not dropped for a
        passing refusal. Refused under a per-party limit (the server says when to come back)
        or the server unreachable, the same bytes are sent again, up to ``PUSH_ATTEMPTS``
        times; a refusal without a time (the reply is too large) is final. Still unreachable
        after the last attempt, the error goes to the main loop, which reconnects.
        """
        backoff = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                ack: pb.Ack = self._stub.Push(
                    self._chunks(task.task_id, payload),
                    metadata=self._metadata,
                    timeout=PULL_TIMEOUT_S,
                )
                return ack
            except grpc.RpcError as exc:
                code, details = _status(exc)
                after = _retry_after(exc)
                last = attempt == PUSH_ATTEMPTS or self._stop.is_set()
                if code is grpc.StatusCode.RESOURCE_EXHAUSTED and (after is None or last):
                    log.warning("party %s: reply refused: %s", self.config.name, details)
                    return None
                if code is not grpc.StatusCode.RESOURCE_EXHAUSTED and (
                    code is not grpc.StatusCode.UNAVAILABLE or last
                ):
                    raise
                wait = min(after, MAX_PUSH_WAIT_S) if after is not None else backoff
                wait *= 1 + random.random() / 2
                log.warning(
                    "party %s: reply to the %s task not delivered (%s: %s); sending it again "
                    "in %.2f s (attempt %d of %d)",
                    self.config.name,
                    task.kind,
                    getattr(code, "name", code),
                    details,
                    wait,
                    attempt + 1,
                    PUSH_ATTEMPTS,
                )
                self._sleep(wait)
                backoff = min(backoff * 2, self.config.max_backoff_s)

    def _answer(self, task: pb.Task) -> None:
        log.info("party %s: %s task, round %d", self.config.name, task.kind, task.round)
        payload = self._handler.handle(task.payload)
        ack = self._push(task, payload)
        if ack is None:
            return
        self.tasks_handled += 1
        if not ack.accepted:
            log.warning("party %s: reply not accepted: %s", self.config.name, ack.reason)


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    """The status code and details of a failed call (an RpcError that is not a call has
    neither)."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    return code, details


def _retry_after(exc: grpc.RpcError) -> float | None:
    """The seconds a refusal says to wait before calling again, if it says (a passing limit)."""
    # (key, value) pairs; the grpc stubs type them as an opaque _Metadatum
    trailing: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == RETRY_AFTER_HEADER:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None
