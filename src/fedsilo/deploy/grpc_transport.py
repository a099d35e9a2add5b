"""The coordinator's side of the gRPC wire: a :class:`~fedsilo.runtime.transport.Transport`.

Parties dial out and long-poll (`Pull`); the server cannot call them. So a
:class:`PartyBoard` keeps, per party, a queue of tasks and the time it was last seen, and the
servicer hands queued tasks to the polls and replies back to the board. :class:`GrpcTransport`
is what the unchanged :class:`~fedsilo.runtime.coordinator.Coordinator` talks to:
``exchange(tasks, timeout_s)`` queues one task per party, waits until every reply is in or the
deadline passes, and returns ``Gathered(replies, failures)``; stragglers are failures with a
reason, and a late reply is refused. Every reply is size-checked against a per-task limit
derived from the task (model size plus headroom), decoded with :meth:`Message.decode` (schema,
finite values) and checked for sender, kind and round before the coordinator sees it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.errors import ErrorCode, ProtocolError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Gathered

log = logging.getLogger(__name__)

REPLY_HEADROOM_BYTES = 1024 * 1024


def reply_limit(
    kind: TaskKind, task_bytes: int, max_message_bytes: int, factor: float = 1.25
) -> int:
    """Largest reply accepted for a task: fit/evaluate replies carry at most the model back."""
    if kind in (TaskKind.FIT, TaskKind.EVALUATE):
        return min(max_message_bytes, int(task_bytes * factor) + REPLY_HEADROOM_BYTES)
    return max_message_bytes


@dataclass
class _Pending:
    party: str
    kind: TaskKind
    round: int
    limit: int
    payload: bytes | None = None
    error: str | None = None
    receiving: bool = False  # a reply is streaming in


@dataclass
class TrafficCounter:
    """Payload bytes that crossed the wire (for the deployment benchmark)."""

    sent: int = 0
    received: int = 0


@dataclass
class PartyBoard:
    """Task queues and presence of every party, shared by the servicer and the transport."""

    liveness_s: float = 30.0
    max_message_bytes: int = 256 * 1024 * 1024
    reply_size_factor: float = 1.25
    clock: Callable[[], float] = time.monotonic
    traffic: TrafficCounter = field(default_factory=TrafficCounter)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[pb.Task]] = {}
        self._seen: dict[str, float] = {}
        self._polling: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}

    # -- presence ---------------------------------------------------------------------------
    def online(self) -> list[str]:
        now = self.clock()
        with self._cond:
            return sorted(
                p
                for p, seen in self._seen.items()
                if self._polling.get(p, 0) > 0 or now - seen <= self.liveness_s
            )

    def heartbeat(self, party: str) -> None:
        with self._cond:
            self._seen[party] = self.clock()
            self._cond.notify_all()

    def _lost(self, party: str) -> bool:
        """Called with the lock held: no poll, reply or heartbeat for ``liveness_s``."""
        seen = self._seen.get(party)
        if self._polling.get(party, 0) > 0:
            return False
        return seen is None or self.clock() - seen > self.liveness_s

    def _silence(self, party: str) -> str:
        """Why ``party`` counts as gone (with the lock held)."""
        seen = self._seen.get(party)
        if seen is None:
            return "never connected to this server"
        return (
            f"no poll, reply or heartbeat for {self.clock() - seen:.1f} s (liveness_s = "
            f"{self.liveness_s:g}): crashed, disconnected or stalled"
        )

    def absence(self, party: str) -> str:
        """Why ``party`` is not online."""
        with self._cond:
            return self._silence(party)

    def last_seen(self) -> dict[str, float]:
        now = self.clock()
        with self._cond:
            return {p: now - seen for p, seen in self._seen.items()}

    # -- the servicer's side ----------------------------------------------------------------
    def pull(self, party: str, wait_s: float, still_there: Callable[[], bool]) -> pb.Task:
        """The party's next task, or an empty task after ``wait_s``."""
        deadline = self.clock() + wait_s
        with self._cond:
            self._seen[party] = self.clock()
            self._polling[party] = self._polling.get(party, 0) + 1
            try:
                queue = self._queues.setdefault(party, deque())
                while not queue and still_there():
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, 0.5))
                task = queue.popleft() if queue and still_there() else pb.Task()
            finally:
                self._polling[party] -= 1
                self._seen[party] = self.clock()
            self.traffic.sent += len(task.payload)
            return task

    def push(
        self, party: str, task_id: str, total_bytes: int, chunks: Iterable[bytes]
    ) -> tuple[bool, str]:
        """Receive a reply chunk by chunk; ``(accepted, reason)``.

        A reply declared or found larger than its task's limit is refused as soon as that is
        known: the bytes past the limit are never read (gRPC's own limit is one chunk).
        """
        with self._cond:
            self._seen[party] = self.clock()
            pending = self._pending.get(task_id)
            if pending is None:
                return False, "unknown task or reply past the round deadline"
            if pending.party != party:
                log.warning(
                    "party %r sent a reply for a task addressed to %r", party, pending.party
                )
                return False, "this task was not addressed to you"
            if pending.payload is not None or pending.error is not None or pending.receiving:
                return False, "this task was already answered"
            pending.receiving = True
        received = bytearray()
        error = None
        if total_bytes > pending.limit:
            error = f"reply of {total_bytes:,} bytes"
        else:
            for chunk in chunks:
                if len(received) + len(chunk) > pending.limit:
                    error = f"reply of more than {len(received) + len(chunk):,} bytes"
                    break
                received += chunk
            else:
                if len(received) != total_bytes:
                    error = f"reply of {len(received):,} bytes, {total_bytes:,} announced"
        with self._cond:
            self.traffic.received += len(received)
            pending.receiving = False
            if self._pending.get(task_id) is not pending:
                return False, "reply past the round deadline"
            if error is not None:
                if not error.endswith("announced"):
                    error += (
                        f" exceeds the {pending.limit:,}-byte limit for a {pending.kind.value} "
                        "task (the model's size times limits.reply_size_factor, plus headroom)"
                    )
                pending.error = error
                self._cond.notify_all()
                return False, error
            pending.payload = bytes(received)
            self._cond.notify_all()
            return True, ""

    # -- the transport's side ---------------------------------------------------------------
    def post(self, tasks: Mapping[str, Message]) -> dict[str, str]:
        """Queue each task; returns task ids by party."""
        ids: dict[str, str] = {}
        with self._cond:
            for party, msg in tasks.items():
                payload = msg.encode()
                task_id = uuid.uuid4().hex
                limit = reply_limit(
                    msg.kind, len(payload), self.max_message_bytes, self.reply_size_factor
                )
                self._pending[task_id] = _Pending(party, msg.kind, msg.round, limit)
                task = pb.Task(
                    task_id=task_id,
                    job_id=msg.job_id,
                    round=msg.round,
                    kind=msg.kind.value,
                    payload=payload,
                    max_reply_bytes=limit,
                )
                self._queues.setdefault(party, deque()).append(task)
                ids[party] = task_id
            self._cond.notify_all()
        return ids

    def collect(self, ids: Mapping[str, str], deadline: float) -> dict[str, _Pending]:
        """Wait until every task is answered or ``deadline``; forget the tasks."""
        with self._cond:
            while self.clock() < deadline:
                waiting = [
                    (party, self._pending[t])
                    for party, t in ids.items()
                    if self._pending[t].payload is None and self._pending[t].error is None
                ]
                if not waiting:
                    break
                for party, pending in waiting:
                    if self._lost(party) and not pending.receiving:
                        pending.error = f"lost: {self._silence(party)}"
                self._cond.wait(min(0.5, max(0.0, deadline - self.clock())))
            done = {party: self._pending.pop(t) for party, t in ids.items()}
            wanted = set(ids.values())
            for queue in self._queues.values():  # undelivered tasks are void now
                kept = [t for t in queue if t.task_id not in wanted]
                queue.clear()
                queue.extend(kept)
            return done


class GrpcTransport:
    """Runs the coordinator's exchanges over the :class:`PartyBoard`."""

    def __init__(self, board: PartyBoard, parties: Sequence[str] | None = None) -> None:
        self._board = board
        self._parties = None if parties is None else set(parties)
        self._setups: dict[str, Message] = {}  # each party's last setup task, to re-send

    def party_names(self) -> list[str]:
        online = self._board.online()
        return [p for p in online if self._parties is None or p in self._parties]

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        deadline = self._board.clock() + timeout_s
        gathered = self._exchange(tasks, deadline, timeout_s)
        for party, msg in tasks.items():
            if msg.kind is TaskKind.SETUP and party in gathered.replies:
                self._setups[party] = msg
        # A party process that restarted mid-job has lost its setup: send it again, then the task.
        lost = {
            p: m
            for p, m in tasks.items()
            if p in self._setups
            and m.kind is not TaskKind.SETUP
            and p in gathered.replies
            and gathered.replies[p].error_code is ErrorCode.NOT_READY
        }
        if not lost:
            return gathered
        log.warning("re-sending setup to restarted parties: %s", ", ".join(sorted(lost)))
        setup = self._exchange({p: self._setups[p] for p in lost}, deadline, timeout_s)
        ready = {p: m for p, m in lost.items() if p in setup.replies and not setup.replies[p].error}
        again = self._exchange(ready, deadline, timeout_s) if ready else Gathered({}, {})
        replies, failures = dict(gathered.replies), dict(gathered.failures)
        for p in lost:
            replies.pop(p, None)
            if p in again.replies:
                replies[p] = again.replies[p]
            else:
                reason = again.failures.get(p) or setup.failures.get(p)
                if reason is None and p in setup.replies:
                    reason = f"setup re-sent after a restart failed: {setup.replies[p].error}"
                failures[p] = reason or "setup re-sent after a restart failed"
        return Gathered(replies, failures)

    def _exchange(
        self, tasks: Mapping[str, Message], deadline: float, timeout_s: float
    ) -> Gathered:
        online = set(self._board.online())
        failures = {p: f"not connected: {self._board.absence(p)}" for p in tasks if p not in online}
        ids = self._board.post({p: m for p, m in tasks.items() if p in online})
        done = self._board.collect(ids, deadline)
        replies: dict[str, Message] = {}
        for party, pending in sorted(done.items()):
            try:
                replies[party] = self._check(party, pending, timeout_s)
            except ProtocolError as exc:
                failures[party] = str(exc)
                log.warning("rejected reply from party '%s': %s", party, exc)
        return Gathered(replies, failures)

    def _check(self, party: str, pending: _Pending, timeout_s: float) -> Message:
        if pending.error is not None:
            raise ProtocolError(pending.error)
        if pending.payload is None:
            raise ProtocolError(f"no reply within the {timeout_s:g} s deadline (dropped)")
        reply = Message.decode(pending.payload, max_bytes=pending.limit)
        if reply.sender != party:
            raise ProtocolError(f"reply claims to be from {reply.sender!r}")
        if reply.error is None and (reply.kind is not pending.kind or reply.round != pending.round):
            raise ProtocolError(
                f"reply is for {reply.kind.value} round {reply.round}, the task was "
                f"{pending.kind.value} round {pending.round}"
            )
        return reply
