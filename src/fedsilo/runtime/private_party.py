"""A party's side of secure-aggregation and client-DP rounds (the runtime glue).

:class:`PrivateParty` keeps the per-round
:class:`~fedsilo.privacy.secagg.protocol.PartyRound` and the job's
:class:`~fedsilo.privacy.secagg.protocol.Session` (its channel key and the neighbours' keys it
has checked), and turns the coordinator's tasks into protocol calls. A ``fit`` task in
private mode trains as usual, then either clips (client DP) and/or quantizes and masks the
update: the coordinator receives only the masked ring vector ``[update * w, clipped-bit, w,
loss * w]`` (``w`` = example weight, or 1 under client DP), never the update, the example
count or the loss in the clear.

No differencing, party side: the party reveals shares for at most one unmasking of a masked
input (its round state goes at the first unmask request), keys each attempt once, and masks
at most one update per fit seed (a coordinator that retries with the seeds of an earlier try
would get the same update inside two sums over different survivors, whose difference is one
party's update).

Client DP, party side: before it trains, the party checks the task's clip norm and noise
shares against its own :class:`~fedsilo.privacy.dp_fedavg.ClientDPPolicy` (its config, not the
coordinator's) and refuses a task outside it, naming the field and both values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.models import flatten, unflatten
from fedsilo.privacy.dp_fedavg import ClientDPPolicy, clip_update
from fedsilo.privacy.noise import NoiseSource
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.identity import Identity, require_identity
from fedsilo.privacy.secagg.protocol import PartyRound, Session
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.protocol.bodies import (
    AttemptOf,
    ClippedFitReply,
    FitReply,
    FitTask,
    MaskedFitReply,
    PrivateOptions,
    parse_body,
)
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply, Route

Trainer = Callable[[], tuple[FitReply, dict[str, np.ndarray]]]


def private_vector(
    update: np.ndarray, num_examples: int, loss: float, opts: PrivateOptions, noise: NoiseSource
) -> np.ndarray:
    """``[payload, clip bit, weight, weighted loss]`` (weight 1 and clipping under client DP).

    Distributed client-DP noise comes from ``noise``, the party's CSPRNG (never a seed the
    coordinator could derive, or it could subtract the noise). A party that adds noise to its
    update but none to its clipped-count bit (fixed clipping) sends no bit: the exact count
    would be a release without noise."""
    dp = opts.client_dp
    if dp is not None:
        clipped, bit = clip_update(update, dp.clip_norm)
        clipped = clipped + noise.normal(dp.noise_std, clipped.shape)
        if dp.bit_noise_std > 0:
            bit += float(noise.normal(dp.bit_noise_std, 1)[0])
        elif dp.noise_std > 0:
            bit = 0.0
        return np.concatenate([clipped, [bit, 1.0, loss]])
    if opts.weight_scale is None:
        raise ProtocolError(
            "a private fit task without client_dp lacks field 'private.weight_scale'"
        )
    w = num_examples / opts.weight_scale
    out = np.empty(update.size + 3)
    np.multiply(update, w, out=out[:-3])
    out[-3:] = (0.0, w, loss * w)
    return out


class PrivateParty:
    """Per-round secure-aggregation state of one party."""

    def __init__(
        self,
        name: str,
        identity: Identity | None = None,
        client_dp: ClientDPPolicy | None = None,
    ) -> None:
        self.name = name
        self._identity = identity
        self._client_dp = client_dp or ClientDPPolicy()  # what it accepts, from its own config
        self._rounds: dict[tuple[int, int], PartyRound] = {}
        self._session: Session | None = None  # its channel key for the current job
        self._started: set[tuple[int, int]] = set()  # (round, attempt) keyed so far
        self._masked_seeds: set[tuple[str, int]] = set()  # (job, fit seed) of masked updates

    def _attempt(self, task: Message) -> int:
        return parse_body(AttemptOf, task, where=f"party {self.name!r}").attempt

    def _round(self, task: Message) -> PartyRound:
        key = (task.round, self._attempt(task))
        found = self._rounds.get(key)
        if found is None:
            raise ProtocolError(
                f"party '{self.name}': no secure-aggregation state for round {task.round} "
                f"attempt {key[1]} (a step arrived without its key exchange, or after unmasking)"
            )
        return found

    @property
    def routes(self) -> dict[TaskKind, Route]:
        """The secure-aggregation steps (the masked input itself rides on FIT: :meth:`fit`)."""
        return {
            TaskKind.SECAGG_KEYS: lambda task: (self.keys(task), {}),
            TaskKind.SECAGG_SHARES: lambda task: (self.shares(task), {}),
            TaskKind.SECAGG_CONFIRM: lambda task: (self.confirm(task), {}),
            TaskKind.SECAGG_UNMASK: lambda task: (self.unmask(task), {}),
        }

    def keys(self, task: Message) -> dict[str, Any]:
        identity = require_identity(self.name, self._identity)
        key = (task.round, self._attempt(task))
        setup = wire.setup_from_body(task.body, tag_prefix=f"{task.job_id}|{task.round}|")
        if key in self._started:
            raise ProtocolError(
                f"party '{self.name}' refuses to key round {task.round} attempt {key[1]} "
                "again (each attempt masks one input under one set of keys)"
            )
        # Only the current round is kept: older state is useless and holds secrets.
        self._rounds = {k: r for k, r in self._rounds.items() if k[0] == task.round}
        self._started.add(key)
        scope = task.job_id.encode()
        if self._session is None or self._session.scope != scope:
            self._session = Session(identity, scope)
        state = PartyRound(identity, setup, session=self._session)
        self._rounds[key] = state
        return wire.keys_reply(state)

    def shares(self, task: Message) -> dict[str, Any]:
        out = self._round(task).share(wire.parse_keys_body(task.body))
        return wire.shares_reply(out)

    def confirm(self, task: Message) -> dict[str, Any]:
        survivors = wire.parse_confirm_body(task.body)
        return wire.confirm_reply(self._round(task).confirm(survivors))

    def unmask(self, task: Message) -> dict[str, Any]:
        state = self._round(task)
        # One unmasking per masked input: the state goes whatever the outcome.
        self._rounds.pop((task.round, self._attempt(task)), None)
        return wire.reveal_reply(state.unmask(wire.parse_unmask_body(task.body)))

    def fit(self, task: Message, body: FitTask, train: Trainer, noise: NoiseSource) -> Reply:
        """Check the options against the party's own policy, train, then clip and/or mask;
        the reply carries no update in the clear."""
        opts = body.private or PrivateOptions()
        if opts.client_dp is not None:
            dp = opts.client_dp
            self._client_dp.check(
                clip_norm=dp.clip_norm,
                noise_std=dp.noise_std,
                bit_noise_std=dp.bit_noise_std,
                parties=None if opts.secagg is None else len(self._round(task).setup.parties),
                where=f"party '{self.name}' round {task.round}",
            )
        if opts.secagg is not None:
            seed = (task.job_id, body.seed)
            if seed in self._masked_seeds:
                raise ProtocolError(
                    f"party '{self.name}' refuses to train round {task.round} from a seed it "
                    "already trained a masked update from: the same update inside two sums "
                    "would let the coordinator difference them"
                )
            self._masked_seeds.add(seed)
            # the neighbours' shares are checked before training charges the round's privacy
            # spend: a forged share or a substituted key costs the party nothing
            self._round(task).receive(wire.decode_ciphertexts(opts.secagg.shares))
        fitted, new_params = train()
        update = flatten(new_params)
        update -= flatten(task.arrays)
        vector = private_vector(update, fitted.num_examples, fitted.train_loss, opts, noise)
        sa = opts.secagg
        # record-level DP spend (the party's own epsilon) is metadata, not the update
        if sa is None:  # client DP with a trusted coordinator: the clipped update only
            payload = unflatten(vector[:-3], task.arrays)
            clipped = ClippedFitReply(
                clipped_bit=float(vector[-3]),
                train_loss=fitted.train_loss,
                privacy=fitted.privacy,
            )
            return clipped, payload
        state = self._round(task)
        quant = Quantizer(sa.clip_range, sa.bits, sa.max_parties)
        encoded = quant.encode(vector, np.random.default_rng(sa.quant_seed), overwrite=True)
        masked = MaskedFitReply(privacy=fitted.privacy)
        return masked, {"masked": state.apply(encoded, overwrite=True)}
