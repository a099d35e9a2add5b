"""The sum step of secure aggregation: the coordinator's side of SecAgg / SecAgg+ over tasks.

The five protocol steps of :mod:`fedsilo.privacy.secagg.protocol` travel as ordinary tasks
of one attempt (SECAGG_KEYS, SECAGG_SHARES, FIT carrying the encrypted shares,
SECAGG_CONFIRM, SECAGG_UNMASK); the coordinator only relays signed public keys, ciphertexts
and signatures, and learns the ring sum of the survivors' quantized vectors. A party that
fails a step counts as dropped.

No differencing (issue: a coordinator that unmasks a sum, rejects the round and unmasks
another sum over different survivors learns the difference): the survivors are counted
against ``selection.min_parties`` *before* any party is asked to unmask, so an attempt that
is going to be rejected never reveals a sum. Each attempt has its own protocol tag, so the
parties draw fresh mask keys and masks, and trains from fresh seeds
(:class:`~.collectors.Attempt`).

The neighbour graph (SecAgg+) depends on the job seed and the selected parties, not on the
round: while the same parties take part, each keeps the same neighbours, and its session
(:class:`~fedsilo.privacy.secagg.protocol.Session`) has already checked their signed channel
keys. The coordinator chooses the graph either way (each party checks its degree and the
survivors' connectivity, :class:`~fedsilo.privacy.secagg.protocol.PartyRound`); one graph
drawn per job also means an honest party's neighbourhood is drawn once, not re-drawn every
round.
"""

from __future__ import annotations

import logging
from typing import Any

from fedsilo.config import SecAggVariant, SecureAggregationConfig
from fedsilo.models import flatten
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.params import ThreatModel
from fedsilo.privacy.secagg.protocol import ServerRound
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.protocol.messages import TaskKind
from fedsilo.runtime.collectors import EXTRA, Attempt, Summed
from fedsilo.runtime.seeds import derive_seed

log = logging.getLogger(__name__)


class SecureSum:
    """SecAgg / SecAgg+ as the sum step of a round (:class:`~.collectors.SumStep`)."""

    def __init__(self, config: SecureAggregationConfig, job_seed: int) -> None:
        self.config = config
        self._seed = job_seed
        self._threat = ThreatModel(config.dropout_rate, config.corruption_rate)
        self._told: set[int] = set()  # round sizes whose raised degree was logged

    def sum(self, attempt: Attempt, options: dict[str, Any]) -> Summed:
        cfg = self.config
        selected, rnd, number = attempt.selected, attempt.round, attempt.number
        length = flatten(attempt.params).size + EXTRA
        plus = cfg.variant is SecAggVariant.SECAGG_PLUS
        self._tell_raised_degree(len(selected), plus)
        rs = wire.plan_round(
            selected,
            plus=plus,
            neighbours=cfg.neighbours,
            threshold=cfg.threshold,
            bits=cfg.bits,
            length=length,
            tag=f"{attempt.job.name}|{rnd}|{number}",
            # one graph per job and party set: the parties' sessions then check each
            # neighbour's channel key once, not every round (see protocol.Session)
            graph_seed=derive_seed(self._seed, "secagg-graph"),
            threat=self._threat,
        )
        server = ServerRound(rs)
        # 0: advertise keys
        body = wire.setup_body(rs)
        tasks = {p: attempt.task(TaskKind.SECAGG_KEYS, body) for p in selected}
        advertised = attempt.parsed(tasks, "secagg keys", lambda r: wire.parse_keys_reply(r.body))
        routed = server.route_keys(advertised)
        # 1: share keys (ciphertexts relayed)
        tasks = {
            p: attempt.task(TaskKind.SECAGG_SHARES, wire.keys_body(ks)) for p, ks in routed.items()
        }
        sent = attempt.parsed(tasks, "secagg shares", lambda r: wire.parse_shares_reply(r.body))
        inbox = server.route_shares(sent)
        # 2: train and send the masked input
        n = len(selected)
        tasks = {}
        for p, box in inbox.items():
            sa = {
                "clip_range": cfg.clip_range,
                "bits": cfg.bits,
                "max_parties": n,
                "quant_seed": derive_seed(self._seed, "secagg-quant", rnd, number, rs.ids[p]),
                "shares": wire.encode_ciphertexts(box),
            }
            tasks[p] = attempt.fit_task(p, options | {"secagg": sa})
        masked = {}
        for p, r in attempt.exchange(tasks, "fit").items():
            y = r.arrays.get("masked")
            if y is None or y.dtype != rs.dtype or y.shape != (length,):
                attempt.reject(p, "fit", "the masked input is missing or has the wrong shape")
            else:
                masked[p] = y
        survivors, dropped = server.collect(masked)
        attempt.accepted = set(survivors)
        # Before anything is unmasked: a sum this attempt would reject is never revealed.
        attempt.require_parties(len(survivors), "masked input(s) before unmasking")
        # 3: consistency round: every survivor confirms the survivor set to its neighbours
        body = wire.confirm_body(server)
        tasks = {p: attempt.task(TaskKind.SECAGG_CONFIRM, body) for p in survivors}
        confirmed = attempt.parsed(
            tasks, "secagg confirm", lambda r: wire.parse_confirm_reply(r.body)
        )
        relayed = server.route_confirmations(confirmed)
        # 4: unmask
        tasks = {
            p: attempt.task(TaskKind.SECAGG_UNMASK, wire.unmask_body(cs))
            for p, cs in relayed.items()
        }
        reveals = attempt.parsed(tasks, "secagg unmask", lambda r: wire.parse_reveal_reply(r.body))
        total = server.unmask(reveals)
        for p in dropped:
            attempt.failures.setdefault(p, "dropped after sharing keys; its masks were removed")
        quant = Quantizer(cfg.clip_range, cfg.bits, n)
        return Summed(quant.decode_sum(total, len(survivors)), survivors)

    def _tell_raised_degree(self, n: int, plus: bool) -> None:
        """Log, once per round size, that the configured SecAgg+ degree was raised."""
        note = wire.raised_degree(n, self.config.neighbours, self._threat) if plus else None
        if note is not None and n not in self._told:
            self._told.add(n)
            log.warning("secure aggregation: %s", note)
