"""What one party, or one source address, may cost the server.

Threat model: a party with valid credentials may still misbehave (hold many long polls, call
in a tight loop), and an outsider may guess tokens. So, per authenticated party: at most
``calls_per_party`` calls at once (long polls included) and ``calls_per_s`` calls a second
(token bucket, burst 2x); over all parties at most ``waiting_polls`` long polls wait at once.
Per source address: ``auth_failures`` failed authentications, refilled one every
``auth_failure_refill_s``; an address past that is refused before its credentials are looked
at, so guessing runs at the refill rate. A refusal is :class:`~fedsilo.deploy.auth.Refusal`
with ``RESOURCE_EXHAUSTED`` and, for a per-party limit, the seconds after which a call may
pass (a party retries a refused reply then, rather than losing it); it is logged (with the
party's name or the address) at most once a second per offender, with the count refused
since, so a flood cannot flood the log too.

Pure bookkeeping with an injected clock; :mod:`fedsilo.deploy.service` calls it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from fedsilo.deploy.auth import Refusal
from fedsilo.deploy.config import LimitsConfig

log = logging.getLogger(__name__)

LOG_EVERY_S = 1.0
BUSY_RETRY_S = 0.25  # told to a party whose call slots are busy: most calls end sooner


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` spends one if there is one."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass
class _Offender:
    refused: int = 0
    logged_at: float = -1e9


@dataclass
class CallLimiter:
    """Per-party concurrency and rate, a cap on waiting polls, per-address auth throttling."""

    limits: LimitsConfig
    parties: int
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: dict[str, int] = field(default_factory=dict)
    _rates: dict[str, TokenBucket] = field(default_factory=dict)
    _auth: dict[str, TokenBucket] = field(default_factory=dict)
    _offenders: dict[str, _Offender] = field(default_factory=dict)
    polls: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # over-limit calls per party

    @property
    def waiting_polls(self) -> int:
        return self.limits.waiting_polls or max(8, 2 * self.parties)

    def acquire(self, party: str, *, poll: bool = False) -> None:
        """Take one of ``party``'s call slots (and a poll slot); :meth:`release` gives it back."""
        now = self.clock()
        with self._lock:
            bucket = self._rates.get(party)
            if bucket is None:
                rate = self.limits.calls_per_s
                bucket = self._rates[party] = TokenBucket(rate, 2 * rate, 2 * rate, now)
            active = self._active.get(party, 0)
            reason = None
            if active >= self.limits.calls_per_party:
                reason = (
                    f"party {party!r} already has {active} calls in progress; the limit is "
                    f"{self.limits.calls_per_party} (limits.calls_per_party)"
                )
                wait = BUSY_RETRY_S
            elif poll and self.polls >= self.waiting_polls:
                reason = (
                    f"{self.polls} long polls are already waiting on this server; the limit is "
                    f"{self.waiting_polls} (limits.waiting_polls)"
                )
                wait = BUSY_RETRY_S
            elif not bucket.take(now):
                reason = (
                    f"party {party!r} calls faster than {self.limits.calls_per_s:g}/s "
                    "(limits.calls_per_s)"
                )
                wait = bucket.wait_s()
            if reason is not None:
                self.refused[party] = self.refused.get(party, 0) + 1
                self._refused(f"party '{party}'", reason, now)
                raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, reason, retry_after_s=wait)
            self._active[party] = active + 1
            self.polls += int(poll)

    def release(self, party: str, *, poll: bool = False) -> None:
        with self._lock:
            self._active[party] -= 1
            self.polls -= int(poll)

    @contextmanager
    def call(self, party: str, *, poll: bool = False) -> Iterator[None]:
        """Hold one of ``party``'s call slots (and a poll slot) for the ``with`` block."""
        self.acquire(party, poll=poll)
        try:
            yield
        finally:
            self.release(party, poll=poll)

    def check_address(self, address: str) -> None:
        """Refuse an address that has used up its failed authentications."""
        now = self.clock()
        with self._lock:
            bucket = self._auth.get(address)
            if bucket is None:
                return
            bucket.refill(now)
            if bucket.tokens >= 1.0:
                return
            reason = (
                f"too many failed authentications from {address} "
                f"(limits.auth_failures = {self.limits.auth_failures}); "
                f"retry in {bucket.wait_s():.0f} s"
            )
            self._refused(address, reason, now)
        raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)

    def auth_failed(self, address: str) -> None:
        """Spend one of ``address``'s failed authentications."""
        now = self.clock()
        with self._lock:
            bucket = self._auth.get(address)
            if bucket is None:
                burst = float(self.limits.auth_failures)
                rate = 1.0 / self.limits.auth_failure_refill_s
                bucket = self._auth[address] = TokenBucket(rate, burst, burst, now)
            bucket.take(now)

    def _refused(self, who: str, reason: str, now: float) -> None:
        """Log a refusal at most once a second per offender (with the lock held)."""
        offender = self._offenders.setdefault(who, _Offender())
        offender.refused += 1
        if now - offender.logged_at >= LOG_EVERY_S:
            log.warning(
                "refused %d call(s) of %s (RESOURCE_EXHAUSTED): %s", offender.refused, who, reason
            )
            offender.refused, offender.logged_at = 0, now


def peer_address(peer: str) -> str:
    """The host of a gRPC peer string (``ipv4:127.0.0.1:5234`` -> ``127.0.0.1``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]").replace("%5B", "").replace("%5D", "")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer
