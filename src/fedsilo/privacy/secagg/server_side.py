"""The coordinator's side of a private round: secure aggregation and/or client-level DP.

:meth:`PrivateRounds.collect` replaces the round's "send FIT, gather updates" step when
``privacy.secure_aggregation`` or ``privacy.client_dp`` is enabled, and returns only an
aggregate (:class:`PrivateAggregate`): the mean update to hand to the server optimizer, who
took part, the mean training loss and the round's privacy record. Under secure aggregation
the five protocol steps (:mod:`.protocol`) travel as ordinary tasks over the transport
(SECAGG_KEYS, SECAGG_SHARES, FIT with the shares, SECAGG_CONFIRM, SECAGG_UNMASK); the
coordinator only relays signed public keys, ciphertexts and signatures. A party that fails a step counts as dropped; an aborted
protocol run (too few survivors) is retried with a fresh selection like any failed round.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsilo.config import JobConfig, SecAggVariant
from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.models import Params, check_params, flatten
from fedsilo.privacy.dp_fedavg import ClientDP
from fedsilo.privacy.noise import NoiseSource
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.params import ThreatModel
from fedsilo.privacy.secagg.protocol import ServerRound
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.setup import COORDINATOR, SetupResult
from fedsilo.runtime.transport import Transport

if TYPE_CHECKING:
    from fedsilo.runtime.coordinator import RoundRecord

log = logging.getLogger(__name__)

_EXTRA = 3  # clip bit, weight, weighted loss


@dataclass(frozen=True)
class PrivateAggregate:
    delta: np.ndarray
    participants: list[str]
    failures: dict[str, str]
    train_loss: float
    attempts: int
    privacy: dict[str, Any] = field(default_factory=dict)
    # every fit reply of the successful attempt, errors included (record-DP spend, refusals)
    fit_replies: dict[str, Message] = field(default_factory=dict)


@dataclass(frozen=True)
class _Sum:
    vector: np.ndarray  # sum over participants of [payload, bit, weight, loss]
    participants: list[str]


class PrivateRounds:
    """Builds each private round from the job config; holds the client-DP state."""

    def __init__(self, job: JobConfig, training_body: dict[str, Any], num_parties: int) -> None:
        self.job = job
        self._training = training_body
        self._fit_replies: dict[str, Message] = {}
        dp = job.privacy.client_dp
        self._dp: ClientDP | None = None
        if dp.enabled:
            assert job.privacy.delta is not None  # checked by the config
            k = max(job.selection.min_parties, math.ceil(job.selection.fraction * num_parties))
            self._dp = ClientDP(dp, job.privacy.delta, min(k, num_parties), num_parties)

    def restore(self, history: Sequence[RoundRecord]) -> None:
        """Pick up the client-DP state of a resumed job from its completed rounds."""
        if self._dp is not None:
            self._dp.restore([record.privacy for record in history])

    def collect(
        self,
        transport: Transport,
        rnd: int,
        setup: SetupResult,
        params: Params,
        select: Callable[[int], list[str]],
    ) -> PrivateAggregate:
        failures: dict[str, str] = {}
        retries = self.job.selection.max_round_retries
        for attempt in range(retries + 1):
            selected = select(attempt)
            failures = {}
            clip_used = self._dp.clip_norm if self._dp is not None else 0.0
            try:
                if self.job.privacy.secure_aggregation.enabled:
                    total = self._secure_sum(
                        transport, rnd, attempt, selected, setup, params, failures
                    )
                else:
                    total = self._clipped_sum(
                        transport, rnd, attempt, selected, setup, params, failures
                    )
                if len(total.participants) < self.job.selection.min_parties:
                    raise RoundFailedError(
                        f"{len(total.participants)} parties took part, selection.min_parties is "
                        f"{self.job.selection.min_parties}"
                    )
            except RoundFailedError as exc:
                failures["(round)"] = str(exc)
                log.warning("round %d attempt %d failed: %s; retrying", rnd, attempt + 1, exc)
                continue
            return self._finish(rnd, attempt, len(selected), total, failures, clip_used)
        reasons = "; ".join(f"{p}: {why}" for p, why in sorted(failures.items()))
        raise RoundFailedError(
            f"round {rnd} failed after {retries + 1} attempt(s) with privacy enabled. {reasons}"
        )

    def _finish(
        self, rnd: int, attempt: int, m: int, total: _Sum, failures: dict[str, str], clip: float
    ) -> PrivateAggregate:
        payload, bits, weight, loss = total.vector[:-_EXTRA], *total.vector[-_EXTRA:]
        privacy: dict[str, Any] = {}
        if self._dp is not None:
            seed = self.job.seed if self.job.privacy.reproducible_noise else None
            noise = NoiseSource.for_mechanism(seed, "client-dp", rnd, attempt)
            delta = self._dp.finish(
                payload, float(bits), m, noise, contributors=len(total.participants)
            )
            privacy = self._dp.record(clip)
        else:
            if weight <= 0:
                raise RoundFailedError(f"round {rnd}: the aggregated example weight is {weight}")
            delta = payload / weight
        train_loss = float(loss / weight) if weight > 0 else float("nan")
        return PrivateAggregate(
            delta,
            total.participants,
            failures,
            train_loss,
            attempt + 1,
            privacy,
            dict(self._fit_replies),
        )

    def _fit_body(self, rnd: int, party: str, setup: SetupResult) -> dict[str, Any]:
        index = {p: i for i, p in enumerate(setup.parties)}.get(party, -1)
        return {"training": self._training, "seed": derive_seed(self.job.seed, "fit", rnd, index)}

    def _options(self, m: int, selected: list[str], setup: SetupResult) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self._dp is not None:
            opts["client_dp"] = self._dp.party_task(m)
        declared = [int(setup.summary.get(p, {}).get("train_examples", 1)) for p in selected]
        opts["weight_scale"] = float(max(declared))
        return opts

    def _exchange(
        self,
        transport: Transport,
        tasks: Mapping[str, Message],
        failures: dict[str, str],
        step: str,
    ) -> dict[str, Message]:
        gathered = transport.exchange(tasks, timeout_s=self.job.selection.timeout_s)
        if step == "fit":
            self._fit_replies = dict(gathered.replies)
        for p, why in gathered.failures.items():
            failures.setdefault(p, f"{step}: {why}")
        ok: dict[str, Message] = {}
        for p, reply in gathered.replies.items():
            if reply.error is not None:
                failures.setdefault(p, f"{step}: {reply.error}")
            else:
                ok[p] = reply
        return ok

    def _clipped_sum(
        self,
        transport: Transport,
        rnd: int,
        attempt: int,
        selected: list[str],
        setup: SetupResult,
        params: Params,
        failures: dict[str, str],
    ) -> _Sum:
        """Client DP with a trusted coordinator: parties send clipped updates in the clear."""
        assert self._dp is not None
        opts = self._options(len(selected), selected, setup) | {"attempt": attempt}
        tasks = {
            p: Message(
                TaskKind.FIT,
                self.job.name,
                rnd,
                COORDINATOR,
                self._fit_body(rnd, p, setup) | {"private": opts},
                params,
            )
            for p in selected
        }
        total = np.zeros(flatten(params).size + _EXTRA)
        names: list[str] = []
        for p, reply in sorted(self._exchange(transport, tasks, failures, "fit").items()):
            try:
                check_params(reply.arrays, params)
                update = flatten({k: reply.arrays[k] for k in params})
                bit, loss = float(reply.body["clipped_bit"]), float(reply.body["train_loss"])
            except (ProtocolError, KeyError, TypeError, ValueError) as exc:
                failures[p] = f"fit: invalid clipped update: {exc}"
                continue
            norm = float(np.linalg.norm(update))
            if norm > self._dp.clip_norm * (1 + 1e-3):  # float32 rounding of the clipped update
                failures[p] = f"fit: update norm {norm:.4g} exceeds the clip norm"
                continue
            total += np.concatenate([update, [bit, 1.0, loss]])
            names.append(p)
        return _Sum(total, names)

    def _secure_sum(
        self,
        transport: Transport,
        rnd: int,
        attempt: int,
        selected: list[str],
        setup: SetupResult,
        params: Params,
        failures: dict[str, str],
    ) -> _Sum:
        cfg = self.job.privacy.secure_aggregation
        n = len(selected)
        tag = f"{self.job.name}|{rnd}|{attempt}"
        length = flatten(params).size + _EXTRA
        rs = wire.plan_round(
            selected,
            plus=cfg.variant is SecAggVariant.SECAGG_PLUS,
            neighbours=cfg.neighbours,
            threshold=cfg.threshold,
            bits=cfg.bits,
            length=length,
            tag=tag,
            graph_seed=derive_seed(self.job.seed, "secagg-graph", rnd, attempt),
            threat=ThreatModel(cfg.dropout_rate, cfg.corruption_rate),
        )
        server = ServerRound(rs)
        quant = Quantizer(cfg.clip_range, cfg.bits, n)

        def task(
            kind: TaskKind, p: str, body: dict[str, Any], arrays: Params | None = None
        ) -> Message:
            return Message(
                kind, self.job.name, rnd, COORDINATOR, {"attempt": attempt} | body, arrays or {}
            )

        # 0: advertise keys
        body = wire.setup_body(rs)
        tasks = {p: task(TaskKind.SECAGG_KEYS, p, body) for p in selected}
        advertised = {}
        for p, r in self._exchange(transport, tasks, failures, "secagg keys").items():
            try:
                advertised[p] = wire.parse_keys_reply(r.body)
            except ProtocolError as exc:
                failures[p] = f"secagg keys: {exc}"
        routed = server.route_keys(advertised)
        # 1: share keys (ciphertexts relayed)
        tasks = {p: task(TaskKind.SECAGG_SHARES, p, wire.keys_body(ks)) for p, ks in routed.items()}
        sent = {}
        for p, r in self._exchange(transport, tasks, failures, "secagg shares").items():
            try:
                sent[p] = wire.parse_shares_reply(r.body)
            except ProtocolError as exc:
                failures[p] = f"secagg shares: {exc}"
        inbox = server.route_shares(sent)
        # 2: train and send the masked input
        opts = self._options(n, selected, setup)
        tasks = {}
        for p, box in inbox.items():
            sa = {
                "clip_range": cfg.clip_range,
                "bits": cfg.bits,
                "max_parties": n,
                "quant_seed": derive_seed(self.job.seed, "secagg-quant", rnd, attempt, rs.ids[p]),
                "shares": wire.encode_ciphertexts(box),
            }
            tasks[p] = task(
                TaskKind.FIT,
                p,
                self._fit_body(rnd, p, setup) | {"private": opts | {"secagg": sa}},
                params,
            )
        masked = {}
        for p, r in self._exchange(transport, tasks, failures, "fit").items():
            y = r.arrays.get("masked")
            if y is None or y.dtype != rs.dtype or y.shape != (length,):
                failures[p] = "fit: the masked input is missing or has the wrong shape"
            else:
                masked[p] = y
        survivors, dropped = server.collect(masked)
        # 3: consistency round: every survivor confirms the survivor set to its neighbours
        body = wire.confirm_body(server)
        tasks = {p: task(TaskKind.SECAGG_CONFIRM, p, body) for p in survivors}
        confirmed = {}
        for p, r in self._exchange(transport, tasks, failures, "secagg confirm").items():
            try:
                confirmed[p] = wire.parse_confirm_reply(r.body)
            except ProtocolError as exc:
                failures[p] = f"secagg confirm: {exc}"
        relayed = server.route_confirmations(confirmed)
        # 4: unmask
        tasks = {
            p: task(TaskKind.SECAGG_UNMASK, p, wire.unmask_body(cs)) for p, cs in relayed.items()
        }
        reveals = {}
        for p, r in self._exchange(transport, tasks, failures, "secagg unmask").items():
            try:
                reveals[p] = wire.parse_reveal_reply(r.body)
            except ProtocolError as exc:
                failures[p] = f"secagg unmask: {exc}"
        total = server.unmask(reveals)
        for p in dropped:
            failures.setdefault(p, "dropped after sharing keys; its masks were removed")
        return _Sum(quant.decode_sum(total, len(survivors)), survivors)
