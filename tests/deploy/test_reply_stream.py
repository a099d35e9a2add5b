"""A reply streams into the board chunk by chunk and is refused once past its task's limit:
whatever size the sender announces, the bytes past the limit are never read."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fedsilo.deploy.grpc_transport import PartyBoard
from fedsilo.protocol.messages import Message, TaskKind

CHUNK = 64 * 1024


def _posted(board: PartyBoard) -> tuple[str, int]:
    task = Message(TaskKind.FIT, "job", 1, "coordinator", {}, {"w": np.zeros(1000, np.float32)})
    (task_id,) = board.post({"org-a": task}).values()
    return task_id, board._pending[task_id].limit


class Chunks:
    """``count`` chunks of ``CHUNK`` zero bytes, counting how many were read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.read += 1
            yield bytes(CHUNK)


def test_a_reply_announced_small_but_sent_large_stops_being_read_at_the_limit() -> None:
    board = PartyBoard()
    task_id, limit = _posted(board)
    chunks = Chunks(1000)  # 64 MB on the way, 10 bytes announced
    accepted, reason = board.push("org-a", task_id, 10, chunks)
    assert not accepted and "exceeds the" in reason and "limit for a fit task" in reason
    assert chunks.read <= limit // CHUNK + 1  # read up to the limit, not the 64 MB
    assert board.traffic.received <= limit


def test_a_reply_announced_over_the_limit_is_refused_before_any_chunk() -> None:
    board = PartyBoard()
    task_id, limit = _posted(board)
    chunks = Chunks(3)
    accepted, reason = board.push("org-a", task_id, limit + 1, chunks)
    assert not accepted and f"reply of {limit + 1:,} bytes exceeds" in reason
    assert chunks.read == 0


def test_a_reply_shorter_than_announced_is_refused() -> None:
    board = PartyBoard()
    task_id, _ = _posted(board)
    accepted, reason = board.push("org-a", task_id, 3 * CHUNK, Chunks(2))
    assert not accepted and f"{2 * CHUNK:,} bytes, {3 * CHUNK:,} announced" in reason


def test_a_second_reply_to_the_same_task_is_refused() -> None:
    board = PartyBoard()
    task_id, _ = _posted(board)
    assert board.push("org-a", task_id, CHUNK, Chunks(1)) == (True, "")
    accepted, reason = board.push("org-a", task_id, CHUNK, Chunks(1))
    assert not accepted and "already answered" in reason


def test_a_party_cannot_answer_a_task_addressed_to_another() -> None:
    """org-b, knowing org-a's task id, pushes a reply for it: refused, and org-a still answers."""
    board = PartyBoard()
    task_id, _ = _posted(board)
    accepted, reason = board.push("org-b", task_id, CHUNK, Chunks(1))
    assert not accepted and "not addressed to you" in reason
    assert board._pending[task_id].payload is None
    assert board.push("org-a", task_id, CHUNK, Chunks(1)) == (True, "")
