"""Per-party limits and auth throttling: the bookkeeping, then a real server under a flood."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fedsilo.deploy.auth import AUTH_HEADER, PARTY_HEADER, Refusal
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.config import LimitsConfig
from fedsilo.deploy.limits import BUSY_RETRY_S, CallLimiter, peer_address
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.deploy.server import Server
from fedsilo.deploy.service import WIRE_VERSION
from tests.deploy.harness import local_server_config, running, token


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_party_gets_at_most_its_concurrent_calls() -> None:
    limiter = CallLimiter(LimitsConfig(calls_per_party=3), parties=2, clock=Clock())
    for _ in range(3):
        limiter.acquire("a", poll=True)
    with pytest.raises(Refusal) as info:
        limiter.acquire("a", poll=True)
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "party 'a' already has 3 calls" in info.value.reason
    assert info.value.retry_after_s == BUSY_RETRY_S  # a slot comes back: the party may retry
    limiter.acquire("b")  # another party is not affected
    limiter.release("a", poll=True)
    limiter.acquire("a")  # a slot came back
    assert limiter.refused == {"a": 1}


def test_rate_limit_refills_over_time() -> None:
    clock = Clock()
    limiter = CallLimiter(LimitsConfig(calls_per_s=2.0), parties=1, clock=clock)
    for _ in range(4):  # burst: 2 x rate
        with limiter.call("a"):
            pass
    with pytest.raises(Refusal, match="faster than 2/s") as info:
        limiter.acquire("a")
    assert info.value.retry_after_s == pytest.approx(0.5)  # when the next token is there
    clock.now += 0.5  # one token back
    with limiter.call("a"):
        pass


def test_waiting_polls_are_capped_over_all_parties() -> None:
    limiter = CallLimiter(LimitsConfig(waiting_polls=2), parties=5, clock=Clock())
    limiter.acquire("a", poll=True)
    limiter.acquire("b", poll=True)
    with pytest.raises(Refusal, match="2 long polls are already waiting"):
        limiter.acquire("c", poll=True)
    limiter.acquire("c")  # a push or a heartbeat still gets through


def test_failed_authentications_throttle_the_address() -> None:
    clock = Clock()
    limits = LimitsConfig(auth_failures=3, auth_failure_refill_s=10.0)
    limiter = CallLimiter(limits, parties=1, clock=clock)
    for _ in range(3):
        limiter.check_address("10.0.0.9")
        limiter.auth_failed("10.0.0.9")
    with pytest.raises(Refusal, match=r"too many failed authentications from 10\.0\.0\.9") as info:
        limiter.check_address("10.0.0.9")
    assert info.value.retry_after_s is None  # no party's reply waits on a guesser
    limiter.check_address("10.0.0.10")  # another address is not affected
    clock.now += 10.0
    limiter.check_address("10.0.0.9")  # one more guess after the refill time


def test_peer_address_drops_the_port() -> None:
    assert peer_address("ipv4:127.0.0.1:53211") == "127.0.0.1"
    assert peer_address("ipv6:[::1]:53211") == "::1"


# -- a real server ----------------------------------------------------------------------------
PARTIES = ("org-a", "org-b")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = local_server_config(
        tmp_path,
        PARTIES,
        poll_s=3.0,
        limits=LimitsConfig(calls_per_party=3, auth_failures=5, auth_failure_refill_s=60),
    )
    with running(config, insecure=True) as srv:
        yield srv


def _pull(port: int, party: str, tok: str) -> grpc.StatusCode:
    channel = open_channel(f"127.0.0.1:{port}", ca=None, insecure=True)
    stub = pb_grpc.CoordinatorStub(channel)
    meta = ((PARTY_HEADER, party), (AUTH_HEADER, f"Bearer {tok}"))
    try:
        stub.Pull(
            pb.PullRequest(schema_version=WIRE_VERSION, party=party), metadata=meta, timeout=20
        )
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    finally:
        channel.close()
    return grpc.StatusCode.OK


def test_a_flooding_party_is_refused_and_logged_while_another_polls(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(_pull, server.port, "org-a", token("org-a")) for _ in range(10)]
        honest = pool.submit(_pull, server.port, "org-b", token("org-b"))
        codes = [f.result() for f in flood]
        assert honest.result() is grpc.StatusCode.OK  # its long poll ran out normally
    assert codes.count(grpc.StatusCode.OK) <= 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 7
    assert "refused" in caplog.text and "party 'org-a'" in caplog.text
    status = server.service.snapshot()
    refused = {p.name: p.refused_calls for p in status.parties}
    assert refused["org-a"] >= 7 and refused["org-b"] == 0


def test_token_guessing_is_throttled_per_address_and_logged(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        codes = [_pull(server.port, "org-a", f"guess-{i}") for i in range(12)]
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}  # guessing stopped
    assert "too many failed authentications from 127.0.0.1" in caplog.text
    assert "refused a call from 127.0.0.1: party 'org-a': missing or wrong token" in caplog.text
