"""Simulated parties that train together: the rendezvous behind vectorized training.

Each simulated :class:`~fedsilo.runtime.party.PartyAgent` still answers its own FIT task
(decodes it, checks the parameters and its budget, builds and seals its reply), but its
local training goes through a :class:`BatchedTrainer`: the in-process transport runs a FIT
exchange's parties concurrently, each party hands its model, rows and seed to the trainer and
waits, and once every party of the exchange is either waiting or done, the trainer trains
all the waiting ones in batched computations
(:func:`~fedsilo.training.vectorized.train_together` over
:func:`~fedsilo.training.vectorized.chunks`, one after the other) and wakes each chunk's
parties as soon as it is done (their replies then overlap the next chunks' training); they
get their trained parameters as arrays (``TrainResult.params``). A party
that does not train (an error, its budget spent) or trains otherwise (DP-SGD) simply
finishes. Which parties train together and in what order depends only on the exchange's tasks
and the architecture, never on thread scheduling, so the model is the same whatever the
number of workers.
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
from fedsilo.training.vectorized import PartyBatch, chunks, signature, train_together

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
    parties of the same exchange; outside an exchange it trains alone.

    The waiting parties train in :func:`~fedsilo.training.vectorized.chunks`, in the thread
    of the last party to arrive or leave; a chunk's parties go on with their replies as soon
    as their chunk is done. (Chunks on several threads did not shorten a round: the parties'
    replies hold the GIL meanwhile.)
    """

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
                due = self._due()
            self._train(due)

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
                due = self._due()
        if alone:
            return train_local(model, features, labels, cfg, seed=seed)
        self._train(due)
        request.done.wait()
        with self._lock:
            self._running += 1  # back to finishing its reply
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _due(self) -> list[list[_Request]]:
        """Called with the lock held: everyone waiting, in chunks, once nobody is still
        running (then nobody else can join: the others are waiting or done)."""
        if self._running > 0 or not self._pending:
            return []
        pending, self._pending = self._pending, []
        groups: dict[object, list[_Request]] = {}
        # deterministic: one group per (architecture, training config), parties by seed
        for request in sorted(pending, key=lambda r: r.party.seed):
            groups.setdefault((signature(request.party.model), request.cfg), []).append(request)
        due: list[list[_Request]] = []
        for group in groups.values():
            by_party = {id(r.party): r for r in group}
            due += [[by_party[id(p)] for p in c] for c in chunks([r.party for r in group])]
        return due

    def _train(self, due: list[list[_Request]]) -> None:
        for chunk in due:
            _train_chunk(chunk)


def _train_chunk(chunk: list[_Request]) -> None:
    """Train one chunk and wake its parties, each with its result or the chunk's error."""
    try:
        results = train_together([r.party for r in chunk], chunk[0].cfg)
    except Exception as exc:  # every waiting party answers with the error
        log.exception("vectorized training of %d parties failed", len(chunk))
        for r in chunk:
            r.error = exc
    else:
        for r, result in zip(chunk, results, strict=True):
            r.result = result
    for r in chunk:
        r.done.set()
