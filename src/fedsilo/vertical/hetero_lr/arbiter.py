"""The coordinator's side of hetero LR: arbiter (HE key holder) and relay.

It drives the epochs and mini-batches, relays sealed guest-host payloads it cannot read, and
decrypts only values a party masked for it. Every exchange goes through a
:class:`~fedsilo.runtime.transport.Transport`, so the same code runs in simulation and over
the network. The loop (per batch; see docs/vertical.md):

1. ``HETERO_LR_FORWARD``  hosts -> sealed ``[[u_h/4]]`` for the guest
2. ``HETERO_LR_RESIDUAL`` guest -> sealed ``[[d]]`` per host, masked ``[[g_guest + r]]``
3. ``HETERO_LR_GRADIENT`` hosts -> masked ``[[g_h + r_h]]``, sealed loss share for the guest
4. arbiter decrypts each masked gradient
5. ``HETERO_LR_UPDATE``   each party gets its own ``g + r`` back, unmasks, steps

and once per epoch ``HETERO_LR_LOSS`` + ``VERTICAL_UNMASKED`` give the guest (and the
coordinator, for the convergence check) the epoch's Taylor loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.privacy.he import SecretContext
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.transport import Transport
from fedsilo.vertical.bodies import (
    Body,
    Empty,
    HeteroLrSetup,
    LossReply,
    LrUpdate,
    MetricsReply,
    Scored,
    ScoreSetup,
    SetupDone,
    Unmask,
)
from fedsilo.vertical.masking import reveal
from fedsilo.vertical.wire import blob, get_blob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LrParams:
    """Hyper-parameters of hetero LR (see :class:`fedsilo.vertical.config.HeteroLrConfig`)."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.15
    l2: float = 0.01
    decay: float = 0.0
    tolerance: float = 1e-4
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("hetero_lr: epochs and batch_size must be at least 1")
        if not self.learning_rate > 0 or self.l2 < 0 or self.decay < 0 or self.tolerance < 0:
            raise ConfigError("hetero_lr: learning_rate must be > 0 and l2, decay, tolerance >= 0")

    def rate(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based): ``learning_rate / (1 + decay * epoch)``."""
        return self.learning_rate / (1.0 + self.decay * epoch)


@dataclass
class LrOutcome:
    losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    converged: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


class HeteroLrArbiter:
    """Runs a hetero-LR job over ``transport`` with the HE key pair ``secret``."""

    def __init__(
        self,
        job_id: str,
        transport: Transport,
        secret: SecretContext,
        *,
        guest: str,
        hosts: list[str],
        params: LrParams,
        seed: int,
        on_epoch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        if not hosts or guest in hosts:
            raise ConfigError("hetero_lr needs one guest and at least one other party as host")
        self.job_id = job_id
        self._transport = transport
        self._secret = secret
        self.guest = guest
        self.hosts = list(hosts)
        self.params = params
        self.seed = seed
        self._on_epoch = on_epoch
        self._step = "setup"
        self._epoch = 0

    # ------------------------------------------------------------------ exchange

    def _exchange(
        self, tasks: Mapping[str, Message], reply: type[Body] = Empty
    ) -> dict[str, Message]:
        """Every party's reply, its body validated as ``reply`` (a ProtocolError otherwise)."""
        gathered = self._transport.exchange(tasks, timeout_s=self.params.timeout_s)
        replies = gathered.require_all(f"hetero_lr {self._step} (epoch {self._epoch})")
        for message in replies.values():
            reply.of(message)
        return replies

    def _task(
        self,
        kind: TaskKind,
        body: Body | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> Message:
        content = {} if body is None else body.dump()
        return Message(kind, self.job_id, self._epoch, "coordinator", content, dict(arrays or {}))

    @staticmethod
    def _relay(reply: Message, recipient: str, sender: str) -> dict[str, np.ndarray]:
        sealed = reply.arrays.get(f"to:{recipient}")
        if sealed is None:
            raise ProtocolError(f"{sender!r} sent nothing for {recipient!r}")
        return {f"from:{sender}": sealed}

    def _decrypt(self, reply: Message, who: str) -> np.ndarray:
        """Decrypt a party's masked vector for it (see :func:`fedsilo.vertical.masking.reveal`)."""
        data = get_blob(reply, "masked" if "masked" in reply.arrays else "masked_gradient", who)
        return reveal(self._secret, self._secret.deserialize_vector(data))

    # ------------------------------------------------------------------ protocol

    def setup(self, train: np.ndarray, test: np.ndarray) -> None:
        """Send roles, split and the public key; connect the parties' sealed channels."""
        body = HeteroLrSetup(
            algorithm="hetero_lr",
            scheme=self._secret.scheme,
            guest=self.guest,
            hosts=self.hosts,
            l2=self.params.l2,
        )
        positions = {"train": train.astype(np.int64), "test": test.astype(np.int64)}
        self._connect(TaskKind.VERTICAL_SETUP, body, positions)
        self._train = np.asarray(train, dtype=np.int64)

    def score_setup(self) -> None:
        """A scoring job: roles and the public key; each party loads its saved part."""
        body = ScoreSetup(
            algorithm="hetero_lr", scheme=self._secret.scheme, guest=self.guest, hosts=self.hosts
        )
        self._connect(TaskKind.VERTICAL_SCORE_SETUP, body, {})

    def _connect(self, kind: TaskKind, body: Body, positions: dict[str, np.ndarray]) -> None:
        arrays = {"he_public": blob(self._secret.public().to_bytes()), **positions}
        parties = [self.guest, *self.hosts]
        self._step = "setup"
        replies = self._exchange({p: self._task(kind, body, arrays) for p in parties}, SetupDone)
        for p in parties:
            done = SetupDone.of(replies[p])
            if done.role != ("guest" if p == self.guest else "host") or not done.features:
                raise ProtocolError(
                    f"vertical_setup reply from {p!r}: field 'role'/'features': a "
                    f"{done.role} with {done.features} features"
                )
        keys = {f"key:{p}": blob(get_blob(replies[p], "channel_key", p)) for p in parties}
        self._step = "keys"
        self._exchange({p: self._task(TaskKind.VERTICAL_KEYS, arrays=keys) for p in parties})

    def _batch(self, rows: np.ndarray, rate: float) -> None:
        pos = {"rows": rows}
        self._step = "forward"
        fwd = self._exchange(
            {h: self._task(TaskKind.HETERO_LR_FORWARD, arrays=pos) for h in self.hosts}
        )
        self._step = "residual"
        relayed: dict[str, np.ndarray] = dict(pos)
        for h in self.hosts:
            relayed.update(self._relay(fwd[h], self.guest, h))
        res = self._exchange({self.guest: self._task(TaskKind.HETERO_LR_RESIDUAL, arrays=relayed)})[
            self.guest
        ]
        self._step = "gradient"
        grad = self._exchange(
            {
                h: self._task(
                    TaskKind.HETERO_LR_GRADIENT, arrays={**pos, **self._relay(res, h, self.guest)}
                )
                for h in self.hosts
            }
        )
        self._step = "update"
        body = LrUpdate(learning_rate=rate)
        updates = {
            self.guest: self._task(
                TaskKind.HETERO_LR_UPDATE,
                body,
                {
                    "masked": self._decrypt(res, self.guest),
                    **{
                        k: v
                        for h in self.hosts
                        for k, v in self._relay(grad[h], self.guest, h).items()
                    },
                },
            )
        }
        for h in self.hosts:
            updates[h] = self._task(
                TaskKind.HETERO_LR_UPDATE, body, {"masked": self._decrypt(grad[h], h)}
            )
        self._exchange(updates)

    def _epoch_loss(self) -> float:
        self._step = "loss"
        reply = self._exchange({self.guest: self._task(TaskKind.HETERO_LR_LOSS)})[self.guest]
        masked = self._decrypt(reply, self.guest)
        out = self._exchange(
            {
                self.guest: self._task(
                    TaskKind.VERTICAL_UNMASKED, Unmask(what="loss"), {"masked": masked}
                )
            },
            LossReply,
        )[self.guest]
        return LossReply.of(out).loss

    def train(self) -> LrOutcome:
        """Epochs of mini-batch gradient descent until ``epochs`` or convergence."""
        outcome = LrOutcome()
        p = self.params
        for epoch in range(p.epochs):
            self._epoch = epoch
            started = time.monotonic()
            rng = np.random.default_rng(derive_seed(self.seed, "hetero_lr/batches", epoch))
            order = self._train[rng.permutation(len(self._train))]
            for start in range(0, len(order), p.batch_size):
                self._batch(order[start : start + p.batch_size], p.rate(epoch))
            loss = self._epoch_loss()
            outcome.losses.append(loss)
            outcome.epoch_seconds.append(time.monotonic() - started)
            # Epochs are numbered from 1 here as in metrics.json's history (loops count from 0).
            log.info(
                "hetero_lr epoch %d loss %.6f (%.2f s)", epoch + 1, loss, outcome.epoch_seconds[-1]
            )
            if self._on_epoch is not None:
                self._on_epoch(epoch + 1, loss, outcome.epoch_seconds[-1])
            if len(outcome.losses) > 1 and abs(outcome.losses[-2] - loss) < p.tolerance:
                outcome.converged = True
                break
        return outcome

    def run_batches(self, count: int) -> float:
        """Run ``count`` batches of epoch 0 (for benchmarks); returns seconds taken."""
        started = time.monotonic()
        rng = np.random.default_rng(derive_seed(self.seed, "hetero_lr/batches", 0))
        order = self._train[rng.permutation(len(self._train))]
        for k in range(count):
            self._batch(
                order[k * self.params.batch_size : (k + 1) * self.params.batch_size],
                self.params.rate(0),
            )
        return time.monotonic() - started

    def predict(self) -> dict[str, float]:
        """Score the held-out rows; the guest computes the metrics and reports them."""
        return MetricsReply.of(self._scores(MetricsReply)).metrics

    def score(self) -> int:
        """A scoring job: every aligned row scored; the scores stay with the guest."""
        return Scored.of(self._scores(Scored)).rows

    def _scores(self, reply_type: type[Body]) -> Message:
        """Hosts' encrypted partial scores sealed for the guest; its masked sum decrypted."""
        self._step = "predict"
        fwd = self._exchange({h: self._task(TaskKind.HETERO_LR_PREDICT) for h in self.hosts})
        relayed: dict[str, np.ndarray] = {}
        for h in self.hosts:
            relayed.update(self._relay(fwd[h], self.guest, h))
        reply = self._exchange(
            {self.guest: self._task(TaskKind.HETERO_LR_PREDICT, arrays=relayed)}
        )[self.guest]
        masked = self._decrypt(reply, self.guest)
        out = self._exchange(
            {
                self.guest: self._task(
                    TaskKind.VERTICAL_UNMASKED, Unmask(what="scores"), {"masked": masked}
                )
            },
            reply_type,
        )[self.guest]
        return out
