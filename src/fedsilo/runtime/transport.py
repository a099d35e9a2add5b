"""The seam between the round loop and the parties.

The coordinator never knows how tasks travel: it hands a :class:`Transport` one task per
party and gets back the replies that arrived before the deadline, with an explicit reason for
every party that did not answer. In-process simulation, gRPC deployment and Ray all implement
this one method (``exchange``); the round loop is the same code for all of them.

Every message crosses the seam as bytes (:meth:`Message.encode`), in-process too, so the
simulation exercises exactly the encoding the network uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.protocol.messages import DEFAULT_MAX_MESSAGE_BYTES, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gathered:
    """Replies that arrived in time, and why each other party has none."""

    replies: dict[str, Message]
    failures: dict[str, str]

    def require_all(self, where: str) -> dict[str, Message]:
        """The replies, for protocols that need every party: a missing reply or an error reply
        raises :class:`RoundFailedError` naming ``where`` and the party."""
        if self.failures:
            detail = "; ".join(f"{p}: {why}" for p, why in sorted(self.failures.items()))
            raise RoundFailedError(f"{where}: no reply from {detail}")
        for name, reply in sorted(self.replies.items()):
            if reply.error is not None:
                raise RoundFailedError(f"{where}: party {name!r} reported: {reply.error}")
        return self.replies


class Transport(Protocol):
    def party_names(self) -> list[str]:
        """Parties currently reachable, sorted."""
        ...

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        """Send each party its task; return replies received before ``timeout_s``."""
        ...


class Handler(Protocol):
    def handle(self, data: bytes) -> bytes: ...


class InProcessTransport:
    """Parties are objects in this process; tasks run one after another."""

    def __init__(
        self, parties: Mapping[str, Handler], *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self._parties = dict(parties)
        self._max_bytes = max_message_bytes

    def party_names(self) -> list[str]:
        return sorted(self._parties)

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        replies: dict[str, Message] = {}
        failures: dict[str, str] = {}
        for name, task in tasks.items():
            party = self._parties.get(name)
            if party is None:
                failures[name] = "not connected"
                continue
            started = time.monotonic()
            try:
                reply = Message.decode(party.handle(task.encode()), max_bytes=self._max_bytes)
            except ProtocolError as exc:
                failures[name] = str(exc)
                log.warning("rejected reply from party '%s': %s", name, exc)
                continue
            except Exception as exc:  # a broken party must not take the coordinator down
                log.warning(
                    "party %s failed while handling %s", name, task.kind.value, exc_info=True
                )
                failures[name] = f"party failed: {type(exc).__name__}: {exc}"
                continue
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                failures[name] = f"replied after {elapsed:.1f} s, past the {timeout_s:g} s deadline"
            elif reply.sender != name:
                failures[name] = f"reply claims to be from {reply.sender!r}"
            else:
                replies[name] = reply
        return Gathered(replies, failures)
