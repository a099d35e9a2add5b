"""``fedsilo status --watch``: follow a running server's status, riding out its restarts.

:class:`StatusWatch` asks for the status every ``interval_s`` seconds and hands each reply to a
view (the command line's tables refreshed in place, or its plain-text log). A call that fails
for a reason retrying can fix, the server down or restarting (gRPC ``UNAVAILABLE``) or too
slow to answer (``DEADLINE_EXCEEDED``), starts an :class:`Outage`: the view is told once,
with the time of the first failed call, and the watch keeps asking at the same interval until
the server answers again. Any other failure ends the watch with its
:class:`~fedsilo.errors.AdminCallError`: a wrong admin token (``UNAUTHENTICATED``), a call not
permitted (``PERMISSION_DENIED``), failed authentications throttled (``RESOURCE_EXHAUSTED``),
an internal error; asking again would only be refused again.

The first call is the caller's, made before the watch starts, and is never retried: it checks
the address, the TLS files and the token, so a mistake in any of them fails at once instead of
waiting for a server that is not there. That matters because a wrong port, and a TLS handshake
the server refuses (no client certificate under mutual TLS, or one it does not trust), read as
``UNAVAILABLE`` too. A server restarted mid-watch with a TLS setup this client does not fit
ends the watch too: the client diagnoses the handshake, and a diagnosed TLS problem is not
transient (:attr:`~fedsilo.errors.AdminCallError.transient`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.status_view import stamp
from fedsilo.errors import AdminCallError


def retrying_helps(exc: AdminCallError) -> bool:
    """Whether a failed admin call may succeed when made again: the error says so
    (:attr:`~fedsilo.errors.AdminCallError.transient`, set by
    :class:`~fedsilo.deploy.client.AdminClient` from the call's gRPC status)."""
    return exc.transient


def busy(reply: pb.StatusReply) -> bool:
    """Whether a job is queued or running (``--until-done`` watches until none is)."""
    return any(j.status in ("queued", "running") for j in reply.jobs)


@dataclass(frozen=True)
class Outage:
    """The server not answering since ``since_s`` (seconds since the epoch, of the first
    failed call), ``error`` that call's message; the watch asks again every ``interval_s``."""

    since_s: float
    error: str
    interval_s: float

    def sentence(self) -> str:
        """What the plain log writes and the live view shows, once per outage."""
        return (
            f"unreachable since {stamp(self.since_s)} ({self.error}); "
            f"asking again every {self.interval_s:g} s"
        )


class WatchView(Protocol):
    def show(self, reply: pb.StatusReply) -> None:
        """A reply: the first, each one after, and the first after an outage."""

    def unreachable(self, outage: Outage) -> None:
        """The server stopped answering (called once per outage)."""


class StatusWatch:
    """Polls ``poll`` every ``interval_s`` and shows the replies until KeyboardInterrupt, or
    with ``until_done`` until the last reply has no job queued or running; ``sleep`` and
    ``clock`` (wall time, seconds since the epoch) are injected for tests."""

    def __init__(
        self,
        poll: Callable[[], pb.StatusReply],
        *,
        interval_s: float,
        until_done: bool,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.poll = poll
        self.interval_s = interval_s
        self.until_done = until_done
        self._sleep = sleep
        self._clock = clock

    def follow(self, reply: pb.StatusReply, view: WatchView) -> None:
        """Watch on from ``reply`` (already shown). A failure retrying cannot fix is raised."""
        outage: Outage | None = None
        while not self.until_done or busy(reply):
            self._sleep(self.interval_s)
            try:
                reply = self.poll()
            except AdminCallError as exc:
                if not retrying_helps(exc):
                    raise
                if outage is None:
                    outage = Outage(
                        since_s=self._clock(), error=str(exc), interval_s=self.interval_s
                    )
                    view.unreachable(outage)
                continue
            outage = None
            view.show(reply)
