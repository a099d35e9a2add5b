"""A stand-in Ray party host for tests/test_ray_simulation.py, in its own light module: a Ray
worker imports it by name (numpy and the message format only, no torch)."""

from __future__ import annotations

import time

from fedsilo.protocol.messages import Message


class Misbehaving:
    """Answers as party ``name`` would, except: "slow" sleeps past any test deadline,
    "impostor" replies under another name, "garbage" sends bytes that are no message."""

    def handle(self, name: str, data: bytes) -> bytes:
        task = Message.decode(data)
        if name == "slow":
            time.sleep(30)
        if name == "garbage":
            return b"\x00not a message"
        sender = "someone-else" if name == "impostor" else name
        return Message(task.kind, task.job_id, task.round, sender).encode()
