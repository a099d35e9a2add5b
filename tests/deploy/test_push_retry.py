"""A computed reply survives a passing refusal, over real gRPC.

The server refuses a call under a per-party limit with RESOURCE_EXHAUSTED and says, in its
trailing metadata, when to come back; the party sends the same reply again then instead of
dropping the work (a round's training, a masked input). A refusal that gives no time (the
reply is over the size limit) stays final.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fedsilo.deploy.auth import AUTH_HEADER, PARTY_HEADER
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.config import LimitsConfig, PartyProcessConfig
from fedsilo.deploy.grpc_transport import GrpcTransport
from fedsilo.deploy.party_process import PartyProcess
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.deploy.server import Server
from fedsilo.deploy.service import WIRE_VERSION
from fedsilo.protocol.messages import Message, TaskKind
from tests.deploy.harness import local_server_config, running, token, write_party_csvs

PARTY = "org-a"
SLOTS = 2  # calls_per_party, the least allowed (a long poll and a reply)


class Squatter:
    """Another connection with the party's credentials holding both its call slots (two long
    polls) while the party answers: the party's reply is refused until the polls end."""

    def __init__(self, address: str) -> None:
        self._channel = open_channel(address, ca=None, insecure=True)
        self._stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
        self._calls: list[grpc.Future] = []

    def hold(self) -> None:
        meta = ((PARTY_HEADER, PARTY), (AUTH_HEADER, f"Bearer {token(PARTY)}"))
        request = pb.PullRequest(schema_version=WIRE_VERSION, party=PARTY)
        for _ in range(SLOTS):
            self._calls.append(self._stub.Pull.future(request, metadata=meta, timeout=30))

    def close(self) -> None:
        for call in self._calls:
            call.cancel()
        self._channel.close()


class Answers:
    """Answers every task with an empty reply, after the squatter took the party's slot."""

    def __init__(self, squatter: Squatter, server: Server) -> None:
        self.squatter, self.server = squatter, server

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        self.squatter.hold()
        for _ in range(100):  # until the squatter's polls hold the slots
            if self.server.limiter._active.get(PARTY, 0) >= SLOTS:
                break
            threading.Event().wait(0.02)
        return Message(task.kind, task.job_id, task.round, PARTY, {}).encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = local_server_config(
        tmp_path,
        [PARTY],
        poll_s=1.0,  # the squatter's long polls end after a second
        limits=LimitsConfig(calls_per_party=SLOTS),
    )
    with running(config, insecure=True) as srv:
        yield srv


def test_a_reply_refused_under_a_passing_limit_is_sent_again_and_arrives(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = write_party_csvs(tmp_path, (PARTY,))[PARTY]
    cfg = PartyProcessConfig(
        name=PARTY, server=server.config.listen, token=token(PARTY), data=csv, heartbeat_s=60
    )
    squatter = Squatter(server.config.listen)
    party = PartyProcess(cfg, Answers(squatter, server), insecure=True)
    thread = threading.Thread(target=party.run, daemon=True)
    try:
        with caplog.at_level(logging.INFO):
            thread.start()
            for _ in range(200):
                if PARTY in server.board.online():
                    break
                threading.Event().wait(0.05)
            task = Message(TaskKind.DESCRIBE, "job", 1, "coordinator", {})
            gathered = GrpcTransport(server.board).exchange({PARTY: task}, timeout_s=20)
    finally:
        party.stop()
        squatter.close()
        thread.join(10)
    assert server.limiter.refused.get(PARTY, 0) >= 1  # the reply really was refused
    assert "sending it again" in caplog.text and "RESOURCE_EXHAUSTED" in caplog.text
    assert PARTY in gathered.replies, gathered.failures  # and still arrived
    assert party.tasks_handled == 1
