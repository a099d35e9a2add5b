"""Helpers shared by bench/secureboost.py and bench/vertical.py (not part of the product)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedsilo.protocol.messages import Message

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "default_credit"


def default_credit(
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Guest features, host features, labels, train rows, held-out rows (80/20 from ``seed``).

    The two files are aligned by a plain merge on ``id`` (PSI is timed in bench/psi.py).
    """
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    guest = guest.rename(columns={c: f"g_{c}" for c in guest.columns if c.startswith("x")})
    host = host.rename(columns={c: f"h_{c}" for c in host.columns if c.startswith("x")})
    df = guest.merge(host, on="id")
    xg = df[[c for c in df if c.startswith("g_")]].to_numpy(float)
    xh = df[[c for c in df if c.startswith("h_")]].to_numpy(float)
    y = df["y"].to_numpy(float)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return xg, xh, y, order[:cut], order[cut:]


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
