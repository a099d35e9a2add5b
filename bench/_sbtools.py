"""Helpers shared by bench/secureboost.py and bench/vertical.py (not part of the product)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedsilo.protocol.messages import Message
from fedsilo.protocol.serve import serve
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.secureboost import SecureBoostGuest, SecureBoostHost, TreeParams, relay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "default_credit"


class TreeClock:
    """Wraps a host's handler: wall time at which each tree's first host task arrived.

    Every SecureBoost host task carries the tree index as its ``round``; the gaps between
    first arrivals are the seconds per tree (the last one ends with :meth:`stop`).
    """

    def __init__(self, inner: Any, *, verbose: bool = True) -> None:
        self.inner = inner
        self.verbose = verbose
        self.start = time.perf_counter()
        self.first: dict[int, float] = {}
        self.end: float | None = None

    def handle(self, data: bytes) -> bytes:
        tree = Message.decode(data).round
        if tree not in self.first:
            now = time.perf_counter()
            if self.verbose and self.first:
                last = max(self.first)
                print(
                    f"    tree {last}: {now - self.first[last]:.1f} s "
                    f"(elapsed {now - self.start:.0f} s)",
                    flush=True,
                )
            self.first[tree] = now
        return bytes(self.inner.handle(data))

    def stop(self) -> None:
        self.end = time.perf_counter()

    def seconds_per_tree(self) -> list[float]:
        """Per tree; tree 0 starts at the setup task (the guest's key generation is before)."""
        stamps = [self.first[t] for t in sorted(self.first)]
        if self.end is not None:
            stamps.append(self.end)
        return [b - a for a, b in itertools.pairwise(stamps)]


class Served:
    """A route table as a transport handler (one party of an in-process benchmark)."""

    def __init__(self, name: str, routes: Any) -> None:
        self.handle = serve(name, routes)


def train_in_process(
    guest_x: np.ndarray,
    y: np.ndarray,
    host_xs: dict[str, np.ndarray],
    params: TreeParams,
    *,
    scheme: Any,
    paillier_bits: int = 2048,
    wrap: dict[str, Any] | None = None,
) -> SecureBoostGuest:
    """SecureBoost training on already aligned rows (no PSI, no held-out scoring): the guest
    and host route tables relayed by :func:`relay`, every message encoded, in this process.
    ``wrap`` optionally wraps a party's handler (``name -> callable(handler) -> handler``)."""
    guest = SecureBoostGuest(
        "guest", guest_x, y, params, scheme=scheme, paillier_bits=paillier_bits
    )
    handlers: dict[str, Any] = {"guest": Served("guest", guest.routes)}
    for name, x in host_xs.items():
        handlers[name] = Served(name, SecureBoostHost(name, x).routes)
    for name, make in (wrap or {}).items():
        handlers[name] = make(handlers[name])
    relay(InProcessTransport(handlers), "bench", "guest", sorted(host_xs), timeout_s=24 * 3600.0)
    return guest
