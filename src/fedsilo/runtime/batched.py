"""Simulated parties that train together: the rendezvous behind vectorized training.

Each simulated :class:`~fedsilo.runtime.party.PartyAgent` still answers its own FIT task
(decodes it, checks the parameters and its budget, builds and seals its reply), but its
local training goes through a :class:`BatchedTrainer`: the in-process transport runs a FIT
exchange's parties concurrently, each party hands its model, rows and seed to the trainer and
waits, and once every party of the exchange is either waiting or done, the trainer trains
all the waiting ones in one batched computation
(:func:`~fedsilo.training.vectorized.train_together`) and wakes them. A party that does not
train (an error, its budget spent) or trains otherwise (DP-SGD) simply finishes. Which
parties train together and in what order depends only on the exchange's tasks, never on
thread scheduling, so the model is the same whatever the number of workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from fedsilo.training import LocalTrainConfig, TrainResult, train_local
from fedsilo.training.vectorized import PartyBatch, signature, train_together

log = logging.getLogger(__name__)


@dataclass
class _Request:
    party: PartyBatch
    cfg: LocalTrainConfig
    done: threading.Event = field(default_factory=threading.Event)
    result: TrainResult | None = None
    error: BaseException | None = None


class BatchedTrainer:
    """A party's ``trainer`` (same call as :func:`train_local`) that trains with the other
    parties of the same exchange; outside an exchange it trains alone."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running = 0  # parties of the open exchange neither waiting nor done
        self._open = False
        self._pending: list[_Request] = []

    @contextmanager
    def exchange(self, calls: int) -> Iterator[Callable[[], None]]:
        """Open a rendezvous for ``calls`` party calls; each must call the yielded function
        when it returns (trained or not)."""
        with self._lock:
            if self._open:
                raise RuntimeError("one batched exchange at a time")
            self._open, self._running, self._pending = True, calls, []

        def left() -> None:
            with self._lock:
                self._running -= 1
                self._maybe_flush()

        try:
            yield left
        finally:
            with self._lock:
                self._open = False

    def __call__(
        self,
        model: nn.Module,
        features: np.ndarray,
        labels: np.ndarray,
        cfg: LocalTrainConfig,
        *,
        seed: int,
    ) -> TrainResult:
        with self._lock:
            alone = not self._open or signature(model) is None
            if not alone:
                request = _Request(PartyBatch(model, features, labels, seed), cfg)
                self._pending.append(request)
                self._running -= 1
                self._maybe_flush()
        if alone:
            return train_local(model, features, labels, cfg, seed=seed)
        request.done.wait()
        with self._lock:
            self._running += 1  # back to finishing its reply
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _maybe_flush(self) -> None:
        """Called with the lock held: train everyone waiting once nobody is still running."""
        if self._running > 0 or not self._pending:
            return
        pending, self._pending = self._pending, []
        groups: dict[object, list[_Request]] = {}
        # deterministic: one group per (architecture, training config), parties by seed
        for request in sorted(pending, key=lambda r: r.party.seed):
            groups.setdefault((signature(request.party.model), request.cfg), []).append(request)
        for group in groups.values():
            try:
                results = train_together([r.party for r in group], group[0].cfg)
            except Exception as exc:  # every waiting party answers with the error
                log.exception("vectorized training of %d parties failed", len(group))
                for r in group:
                    r.error = exc
            else:
                for r, result in zip(group, results, strict=True):
                    r.result = result
            for r in group:
                r.done.set()
