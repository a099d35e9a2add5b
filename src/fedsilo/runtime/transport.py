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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.protocol.messages import DEFAULT_MAX_MESSAGE_BYTES, Message, TaskKind

if TYPE_CHECKING:
    from fedsilo.runtime.batched import BatchedTrainer

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


Outcome = tuple[Message | None, str | None]  # a reply, or why there is none

BATCH_CHUNK = 1024  # parties per vectorized rendezvous (one thread each while it lasts)


class InProcessTransport:
    """Parties are objects in this process.

    With ``workers`` > 1, up to that many parties handle their tasks at once (threads: torch
    releases the GIL while it computes; the simulation gives each party one torch thread).
    With a ``batched`` trainer (the one the parties train through), a FIT exchange runs its
    parties together so that they train in one vectorized computation
    (:mod:`fedsilo.runtime.batched`). Replies come back in task order either way, and every
    party computes from its own task alone, so the outcome does not depend on ``workers``.
    """

    def __init__(
        self,
        parties: Mapping[str, Handler],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        workers: int = 1,
        batched: BatchedTrainer | None = None,
    ) -> None:
        self._parties = dict(parties)
        self._max_bytes = max_message_bytes
        self._workers = workers
        self._batched = batched
        # the batched exchanges' threads, kept from one round to the next (they exit when
        # the transport is garbage-collected)
        self._rendezvous = ThreadPoolExecutor(BATCH_CHUNK) if batched is not None else None

    def party_names(self) -> list[str]:
        return sorted(self._parties)

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        items = list(tasks.items())
        outcomes: list[Outcome]
        if self._batched is not None and any(t.kind is TaskKind.FIT for _, t in items):
            outcomes = []
            for start in range(0, len(items), BATCH_CHUNK):
                outcomes += self._together(items[start : start + BATCH_CHUNK], timeout_s)
        elif self._workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(min(self._workers, len(items))) as pool:
                outcomes = list(pool.map(lambda it: self._call(it[0], it[1], timeout_s), items))
        else:
            outcomes = [self._call(name, task, timeout_s) for name, task in items]
        replies: dict[str, Message] = {}
        failures: dict[str, str] = {}
        for (name, _), (reply, why) in zip(items, outcomes, strict=True):
            if reply is not None:
                replies[name] = reply
            else:
                assert why is not None
                failures[name] = why
        return Gathered(replies, failures)

    def _together(self, items: list[tuple[str, Message]], timeout_s: float) -> list[Outcome]:
        """Every party of ``items`` at once, one thread each, meeting in the trainer."""
        assert self._batched is not None and self._rendezvous is not None
        with self._batched.exchange(len(items)) as left:

            def call(item: tuple[str, Message]) -> Outcome:
                try:
                    return self._call(item[0], item[1], timeout_s)
                finally:
                    left()

            return list(self._rendezvous.map(call, items))

    def _call(self, name: str, task: Message, timeout_s: float) -> Outcome:
        party = self._parties.get(name)
        if party is None:
            return None, "not connected"
        started = time.monotonic()
        try:
            reply = Message.decode(party.handle(task.encode()), max_bytes=self._max_bytes)
        except ProtocolError as exc:
            log.warning("rejected reply from party '%s': %s", name, exc)
            return None, str(exc)
        except Exception as exc:  # a broken party must not take the coordinator down
            log.warning("party %s failed while handling %s", name, task.kind.value, exc_info=True)
            return None, f"party failed: {type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            return None, f"replied after {elapsed:.1f} s, past the {timeout_s:g} s deadline"
        if reply.sender != name:
            return None, f"reply claims to be from {reply.sender!r}"
        return reply, None
