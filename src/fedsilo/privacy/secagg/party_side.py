"""A party's side of secure-aggregation and client-DP rounds (the runtime glue).

:class:`PrivateParty` keeps the per-round :class:`~.protocol.PartyRound` and turns the
coordinator's tasks into protocol calls. A ``fit`` task in private mode trains as usual, then
either clips (client DP) and/or quantizes and masks the update: the coordinator receives only
the masked ring vector ``[update * w, clipped-bit, w, loss * w]`` (``w`` = example weight,
or 1 under client DP), never the update, the example count or the loss in the clear.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.models import flatten, unflatten
from fedsilo.privacy.dp_fedavg import clip_update
from fedsilo.privacy.secagg.protocol import PartyRound, RoundSetup
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.runtime.messages import Message, TaskKind

Reply = tuple[dict[str, Any], dict[str, np.ndarray]]
Trainer = Callable[[Message], Reply]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: object) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise ProtocolError("a ciphertext is not valid base64") from None


def private_vector(
    update: np.ndarray, num_examples: int, loss: float, opts: dict[str, Any]
) -> np.ndarray:
    """``[payload, clip bit, weight, weighted loss]`` (weight 1 and clipping under client DP)."""
    dp = opts.get("client_dp")
    if dp is not None:
        clipped, bit = clip_update(update, float(dp["clip_norm"]))
        rng = np.random.default_rng(secrets.randbits(128))  # never derivable by the coordinator
        if float(dp["noise_std"]) > 0:
            clipped = clipped + rng.normal(0.0, float(dp["noise_std"]), clipped.shape)
        noisy_bit = bit + (
            rng.normal(0.0, float(dp["bit_noise_std"])) if dp["bit_noise_std"] else 0
        )
        return np.concatenate([clipped, [noisy_bit, 1.0, loss]])
    w = num_examples / float(opts["weight_scale"])
    return np.concatenate([update * w, [0.0, w, loss * w]])


class PrivateParty:
    """Per-round secure-aggregation state of one party."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._rounds: dict[tuple[int, int], PartyRound] = {}

    def _round(self, task: Message) -> PartyRound:
        key = (task.round, int(task.body["attempt"]))
        found = self._rounds.get(key)
        if found is None:
            raise ProtocolError(
                f"party '{self.name}': no secure-aggregation state for round {task.round} "
                f"attempt {key[1]} (a step arrived without its key exchange)"
            )
        return found

    def handle(self, task: Message) -> dict[str, Any]:
        if task.kind is TaskKind.SECAGG_KEYS:
            b = task.body
            neighbours = tuple(str(v) for v in b["neighbours"])
            threshold = int(b["threshold"])
            if not (2 <= threshold <= len(neighbours) + 1):
                raise ProtocolError(
                    f"party '{self.name}' refuses threshold {threshold} for "
                    f"{len(neighbours) + 1} shareholders (must be at least 2)"
                )
            setup = RoundSetup(
                tag=str(b["tag"]).encode(),
                ids={str(k): int(v) for k, v in b["ids"].items()},
                neighbours={self.name: neighbours},
                threshold=threshold,
                bits=int(b["bits"]),
                length=int(b["length"]),
            )
            # Only the current round is kept: older state is useless and holds secrets.
            self._rounds = {k: r for k, r in self._rounds.items() if k[0] == task.round}
            state = PartyRound(self.name, setup)
            self._rounds[(task.round, int(b["attempt"]))] = state
            c_pk, s_pk = state.advertise()
            return {"c": c_pk.hex(), "s": s_pk.hex()}
        if task.kind is TaskKind.SECAGG_SHARES:
            peer = {
                str(v): (bytes.fromhex(k[0]), bytes.fromhex(k[1]))
                for v, k in task.body["keys"].items()
            }
            out = self._round(task).share(peer)
            return {"shares": {v: b64(blob) for v, blob in out.items()}}
        if task.kind is TaskKind.SECAGG_UNMASK:
            state = self._round(task)
            reveal = state.unmask(task.body["survivors"], task.body["dropped"])
            self._rounds.pop((task.round, int(task.body["attempt"])), None)
            return {"reveal": {v: [kind, x, format(y, "x")] for v, (kind, x, y) in reveal.items()}}
        raise ProtocolError(
            f"party '{self.name}': {task.kind.value} is not a secure-aggregation step"
        )

    def fit(self, task: Message, train: Trainer) -> Reply:
        """Train, then clip and/or mask; the reply carries no update in the clear."""
        opts = dict(task.body["private"])
        body, new_params = train(task)
        update = flatten(new_params) - flatten(task.arrays)
        vector = private_vector(update, int(body["num_examples"]), float(body["train_loss"]), opts)
        sa = opts.get("secagg")
        # record-level DP spend (the party's own epsilon) is metadata, not the update
        spend = {"privacy": body["privacy"]} if "privacy" in body else {}
        if sa is None:  # client DP with a trusted coordinator: the clipped update only
            payload = unflatten(vector[:-3], task.arrays)
            reply = {"clipped_bit": float(vector[-3]), "train_loss": body["train_loss"]}
            return reply | spend, payload
        state = self._round(task)
        quant = Quantizer(float(sa["clip_range"]), int(sa["bits"]), int(sa["max_parties"]))
        encoded = quant.encode(vector, np.random.default_rng(int(sa["quant_seed"])))
        shares = {str(v): unb64(c) for v, c in sa["shares"].items()}
        return spend, {"masked": state.mask(shares, encoded)}
