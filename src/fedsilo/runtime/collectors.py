"""How one attempt at a round turns the selected parties' work into one update.

The round loop (:mod:`fedsilo.runtime.coordinator`) selects parties, hands the attempt to
its :class:`Collector`, and applies, evaluates, records and checkpoints whatever comes back;
it retries the round with a fresh selection when the collector raises
:class:`RoundFailedError`. Collectors compose (the wrapper idea of Flower's DP strategies,
keeping the epsilon record Flower's wrappers lack):

* :class:`PlainCollector`: FIT in the clear, validate each update, the configured
  aggregator (FedAvg, median, trimmed mean, Krum) over the pseudo-gradients;
* a *sum step* gives the sum of ``[payload, clip bit, weight, weighted loss]`` over the
  participants without the coordinator seeing more than that sum:
  :class:`ClearSum` (clipped updates to a trusted coordinator) or
  :class:`~fedsilo.runtime.secure_sum.SecureSum` (secure aggregation, SecAgg / SecAgg+);
* :class:`WeightedMean` (secure aggregation alone) or :class:`ClientDPCollector`
  (DP-FedAvg: noise, the fixed-denominator mean, adaptive clipping, the epsilon record) turn
  that sum into the update.

No differencing: a sum step checks ``selection.min_parties`` on the parties whose inputs
the sum would hold *before* it releases the sum (for secure aggregation: before any party is
asked to unmask), so a rejected attempt has released nothing; each attempt trains from fresh
seeds (:func:`~fedsilo.runtime.seeds.fit_seed`) with fresh masks, and every noisy release is
counted by the DP accountant (``ClientDP.finish``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from fedsilo.aggregation import AggregatorSpec
from fedsilo.config import JobConfig
from fedsilo.errors import ErrorCode, ProtocolError, RoundFailedError
from fedsilo.models import Params, check_params, flatten
from fedsilo.privacy.dp_fedavg import ClientDP
from fedsilo.privacy.noise import NoiseSource
from fedsilo.protocol.bodies import ClippedFitReply
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.replies import accept_fit, reply_body
from fedsilo.runtime.seeds import fit_seed
from fedsilo.runtime.setup import COORDINATOR, SetupResult
from fedsilo.runtime.transport import Transport

if TYPE_CHECKING:
    from fedsilo.runtime.coordinator import RoundRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

EXTRA = 3  # what follows the payload in a private vector: clip bit, weight, weighted loss


@dataclass
class Attempt:
    """One try at a round: who was selected, how to reach them, and what went wrong."""

    job: JobConfig
    transport: Transport
    setup: SetupResult
    round: int
    number: int  # 0 for the first try
    selected: list[str]
    params: Params
    training: dict[str, Any]
    failures: dict[str, str] = field(default_factory=dict)
    # every fit reply of this attempt, error replies included (record-DP spend, refusals)
    fit_replies: dict[str, Message] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)  # parties whose update this attempt took

    def task(self, kind: TaskKind, body: dict[str, Any], arrays: Params | None = None) -> Message:
        body = {"attempt": self.number} | body
        return Message(kind, self.job.name, self.round, COORDINATOR, body, arrays or {})

    def fit_task(self, party: str, private: dict[str, Any] | None = None) -> Message:
        """Train from the global parameters with a seed fresh for this round and attempt."""
        index = self.setup.parties.index(party) if party in self.setup.parties else -1
        body: dict[str, Any] = {
            "training": self.training,
            "seed": fit_seed(self.job.seed, self.round, self.number, index),
        }
        if private is not None:
            body["private"] = private
        return self.task(TaskKind.FIT, body, self.params)

    def exchange(self, tasks: Mapping[str, Message], step: str) -> dict[str, Message]:
        """The replies without an error; every missing or error reply becomes a failure."""
        gathered = self.transport.exchange(tasks, timeout_s=self.job.selection.timeout_s)
        if step == "fit":
            self.fit_replies = dict(gathered.replies)
        for party, why in gathered.failures.items():
            self.failures.setdefault(party, f"{step}: {why}")
        ok: dict[str, Message] = {}
        for party, reply in sorted(gathered.replies.items()):
            if reply.error_code is ErrorCode.BUDGET_EXHAUSTED:  # logged, once a round, by the
                self.failures[party] = f"{step}: party reported: {reply.error}"  # budget tracker
            elif reply.error is not None:
                self.reject(party, step, f"party reported: {reply.error}")
            else:
                ok[party] = reply
        return ok

    def parsed(
        self, tasks: Mapping[str, Message], step: str, parse: Callable[[Message], T]
    ) -> dict[str, T]:
        """:meth:`exchange`, then ``parse`` each reply; a :class:`ProtocolError` rejects it."""
        out: dict[str, T] = {}
        for party, reply in self.exchange(tasks, step).items():
            try:
                out[party] = parse(reply)
            except ProtocolError as exc:
                self.reject(party, step, str(exc))
        return out

    def reject(self, party: str, step: str, why: str) -> None:
        self.failures[party] = f"{step}: {why}"
        log.warning(
            "round %d: rejected the %s reply of party '%s': %s", self.round, step, party, why
        )

    def require_parties(self, count: int, what: str) -> None:
        """Fail the attempt (before anything is released) below ``selection.min_parties``."""
        need = self.job.selection.min_parties
        if count < need:
            raise RoundFailedError(f"{count} {what}, {need} needed (selection.min_parties)")


@dataclass(frozen=True)
class Collected:
    """What an attempt produced: the update for the server optimizer and who made it."""

    delta: np.ndarray  # flat pseudo-gradient, same layout as flatten(params)
    participants: list[str]
    train_loss: float
    privacy: dict[str, Any] = field(default_factory=dict)  # client-DP spend, else empty


class Collector(Protocol):
    def collect(self, attempt: Attempt) -> Collected:
        """The attempt's update; :class:`RoundFailedError` if the attempt failed."""
        ...

    def restore(self, history: Sequence[RoundRecord]) -> None:
        """Continue a resumed job after its completed rounds."""
        ...


def validate_fit(reply: Message, attempt: Attempt) -> tuple[Params, int, float]:
    """A clear-text fit reply's (parameters in the global order, examples, loss), checked
    against the job's model and the training rows the party declared at setup."""
    declared = attempt.setup.declared(reply.sender).train_examples
    params, body = accept_fit(reply, attempt.round, attempt.params, declared)
    return params, body.num_examples, body.train_loss


class PlainCollector:
    """Updates in the clear, combined by the configured aggregator (weighted by examples)."""

    def __init__(self, aggregator: AggregatorSpec) -> None:
        self.aggregator = aggregator
        # the (parties, parameters) matrix of updates, reused from round to round: ~80 MB
        # at 100 MLPs, whose fresh pages would cost more than filling them
        self._updates = np.empty((0, 0))

    def collect(self, attempt: Attempt) -> Collected:
        tasks = {p: attempt.fit_task(p) for p in attempt.selected}
        accepted: dict[str, tuple[Params, int, float]] = {}
        for party, reply in attempt.exchange(tasks, "fit").items():
            try:
                accepted[party] = validate_fit(reply, attempt)
            except ProtocolError as exc:
                attempt.reject(party, "fit", str(exc))
        attempt.accepted = set(accepted)
        attempt.require_parties(len(accepted), "valid update(s)")
        base = flatten(attempt.params)
        names = sorted(accepted)
        if self._updates.shape != (len(names), base.size):
            self._updates = np.empty((len(names), base.size))
        updates = self._updates
        for row, p in zip(updates, names, strict=True):
            np.subtract(flatten(accepted[p][0], out=row), base, out=row)
        weights = np.array([accepted[p][1] for p in names], dtype=np.float64)
        total = float(weights.sum())
        loss = sum(accepted[p][2] * accepted[p][1] for p in names) / total
        delta = self.aggregator.aggregate(updates, weights)
        if np.may_share_memory(delta, updates):  # the buffer is next round's
            delta = delta.copy()
        return Collected(delta, names, loss)

    def restore(self, history: Sequence[RoundRecord]) -> None:
        return None


@dataclass(frozen=True)
class Summed:
    vector: np.ndarray  # sum over participants of [payload, clip bit, weight, weighted loss]
    participants: list[str]

    def parts(self) -> tuple[np.ndarray, float, float, float]:
        payload, (bits, weight, loss) = self.vector[:-EXTRA], self.vector[-EXTRA:]
        return payload, float(bits), float(weight), float(loss)


class SumStep(Protocol):
    def sum(self, attempt: Attempt, options: dict[str, Any]) -> Summed:
        """FIT the selected parties with ``options`` (their ``private`` task body) and sum.

        Must call ``attempt.require_parties`` on the parties the sum would hold before the
        sum exists anywhere, and set ``attempt.accepted``.
        """
        ...


def weight_scale(attempt: Attempt) -> float:
    """The largest declared training count of the selected: example weights become <= 1."""
    summary = attempt.setup.summary
    return float(max(int(summary.get(p, {}).get("train_examples", 1)) for p in attempt.selected))


class ClearSum:
    """Client DP with a trusted coordinator: each party sends its clipped update in the clear."""

    def sum(self, attempt: Attempt, options: dict[str, Any]) -> Summed:
        clip_norm = float(options["client_dp"]["clip_norm"])
        tasks = {p: attempt.fit_task(p, options) for p in attempt.selected}
        total = np.zeros(flatten(attempt.params).size + EXTRA)
        names: list[str] = []
        for p, reply in attempt.exchange(tasks, "fit").items():
            try:
                body = reply_body(ClippedFitReply, reply, TaskKind.FIT, attempt.round)
                check_params(reply.arrays, attempt.params)
                update = flatten({k: reply.arrays[k] for k in attempt.params})
            except ProtocolError as exc:
                attempt.reject(p, "fit", f"invalid clipped update: {exc}")
                continue
            bit, loss = body.clipped_bit, body.train_loss
            norm = float(np.linalg.norm(update))
            if norm > clip_norm * (1 + 1e-3):  # float32 rounding of the clipped update
                attempt.reject(p, "fit", f"update norm {norm:.4g} exceeds the clip norm")
                continue
            total += np.concatenate([update, [bit, 1.0, loss]])
            names.append(p)
        attempt.accepted = set(names)
        attempt.require_parties(len(names), "valid clipped update(s)")
        return Summed(total, names)


class WeightedMean:
    """Secure aggregation without DP: the example-weighted mean of the survivors' updates."""

    def __init__(self, step: SumStep) -> None:
        self.step = step

    def collect(self, attempt: Attempt) -> Collected:
        total = self.step.sum(attempt, {"weight_scale": weight_scale(attempt)})
        payload, _, weight, loss = total.parts()
        if weight <= 0:
            raise RoundFailedError(
                f"round {attempt.round}: the aggregated example weight is {weight}"
            )
        return Collected(payload / weight, total.participants, loss / weight)

    def restore(self, history: Sequence[RoundRecord]) -> None:
        return None


class ClientDPCollector:
    """DP-FedAvg around a sum step (:mod:`fedsilo.privacy.dp_fedavg` holds the mechanism)."""

    def __init__(self, step: SumStep, dp: ClientDP, noise_seed: int | None) -> None:
        self.step = step
        self.dp = dp
        self._seed = noise_seed  # None (the default): noise from the CSPRNG

    def collect(self, attempt: Attempt) -> Collected:
        m = len(attempt.selected)
        clip_used = self.dp.clip_norm
        options = {"client_dp": self.dp.party_task(m), "weight_scale": weight_scale(attempt)}
        total = self.step.sum(attempt, options)
        payload, bits, weight, loss = total.parts()
        noise = NoiseSource.for_mechanism(self._seed, "client-dp", attempt.round, attempt.number)
        # the release: accounted here, with the noise actually in the sum
        delta = self.dp.finish(payload, bits, m, noise, contributors=len(total.participants))
        train_loss = loss / weight if weight > 0 else float("nan")
        return Collected(delta, total.participants, train_loss, self.dp.record(clip_used))

    def restore(self, history: Sequence[RoundRecord]) -> None:
        self.dp.restore([record.privacy for record in history])


def build_collector(job: JobConfig, num_parties: int) -> Collector:
    """The job's collector: plain, secure aggregation, client DP, or client DP over SecAgg."""
    from fedsilo.runtime.secure_sum import SecureSum

    sa, dp = job.privacy.secure_aggregation, job.privacy.client_dp
    if not sa.enabled and not dp.enabled:
        return PlainCollector(job.aggregation.aggregator_spec())
    step: SumStep = SecureSum(sa, job.seed) if sa.enabled else ClearSum()
    if not dp.enabled:
        return WeightedMean(step)
    assert job.privacy.delta is not None  # checked by the config
    selected = job.selection.per_round(num_parties)
    mechanism = ClientDP(dp, job.privacy.delta, selected, num_parties)
    noise_seed = job.seed if job.privacy.reproducible_noise else None
    return ClientDPCollector(step, mechanism, noise_seed)
