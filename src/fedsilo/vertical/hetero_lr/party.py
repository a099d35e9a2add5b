"""A vertical party's side of hetero logistic regression: guest (labels) or host.

Each party keeps its own aligned rows and weights. It sees: the HE public key, row positions
(indices into the PSI-agreed order, no IDs), ciphertexts under the arbiter's key (sealed end
to end between guest and hosts, see :mod:`fedsilo.vertical.channel`), and the arbiter's
decryption of ITS OWN masked values. See docs/vertical.md for the protocol and who sees what.

:attr:`HeteroLrParty.routes` is the party's route table: ``VERTICAL_SETUP``
(:meth:`HeteroLrParty.setup`) and every later step. A guest's table and a host's differ (only
the guest has residual, loss and unmasked steps; only a host forward and gradient), so a step
for the other role is refused as unsupported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from scipy.special import expit

from fedsilo.errors import DataError, FedsiloError, NotReadyError, ProtocolError
from fedsilo.privacy.he import EncryptedVector, HeScheme, PublicContext, load_public
from fedsilo.protocol.messages import Message, TaskKind
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
    SetupTask,
    Unmask,
)
from fedsilo.vertical.channel import PartyChannel
from fedsilo.vertical.encoding import PartyEncoding
from fedsilo.vertical.masking import MASK_LEVELS, FloatArray, MaskLevel, Pending, mask, unmask
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.wire import blob, get_blob, get_positions

LR_PART_FORMAT = "fedsilo.hetero_lr/2"
"""The ``format`` of a hetero-LR part (safetensors metadata). Version 1 had no ``format`` and
no encoding; such a part is refused (see :meth:`LrPart.load`)."""


@dataclass(frozen=True)
class LrPart:
    """One party's saved hetero-LR part: weights (the guest's last is the intercept), the
    standardization of its training rows, its role and its encoding (column types, category
    values, missing-value fills: :class:`~fedsilo.vertical.encoding.PartyEncoding`)."""

    role: Literal["guest", "host"]
    encoding: PartyEncoding
    weights: FloatArray
    mean: FloatArray
    std: FloatArray

    @property
    def features(self) -> list[str]:
        return self.encoding.feature_names

    @classmethod
    def load(cls, path: Path, party: str) -> LrPart:
        """Read ``path`` (written by :meth:`HeteroLrParty.save`); refusals name party and file."""
        where = f"party {party!r}: saved hetero-LR part {path}"
        try:
            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
                tensors = {k: np.asarray(fh.get_tensor(k), dtype=np.float64) for k in fh.keys()}  # noqa: SIM118
        except (OSError, SafetensorError) as exc:
            raise DataError(
                f"{where} cannot be read ({exc}): it is damaged or not a model part. Copy the "
                "party's part again from where its training run wrote it, or retrain."
            ) from None
        role, owner = meta.get("role"), meta.get("party")
        missing = sorted({"weights", "mean", "std"} - set(tensors))
        if role not in ("guest", "host") or missing or owner != party:
            lacks = f", lacking {missing}" if missing else ""
            raise DataError(
                f"{where} is not this party's part (it is party {owner!r}'s, role {role!r}"
                f"{lacks}). Put {party!r}'s own part there ({path.name} from the models of "
                "the run it trained in)."
            )
        if meta.get("format") != LR_PART_FORMAT:
            raise DataError(
                f"{where} was written by an earlier fedsilo (format "
                f"{meta.get('format', '1')!r}, expected {LR_PART_FORMAT!r}): it lacks the "
                "training run's column types, category values and missing-value fills, which "
                "scoring applies. Retrain the run to score with it."
            )
        try:
            encoding = PartyEncoding.model_validate_json(meta.get("encoding", ""))
        except ValidationError as exc:
            raise DataError(
                f"{where}: its encoding is malformed: {exc.errors()[0]['msg']}"
            ) from None
        d = len(encoding.feature_names)
        shapes = (tensors["mean"].shape, tensors["std"].shape, tensors["weights"].shape)
        if (
            shapes != ((d,), (d,), (d + (role == "guest"),))
            or not (tensors["std"] > 0).all()
            or meta.get("features") != ",".join(encoding.feature_names)
            or not encoding.fitted
        ):
            raise DataError(f"{where}: weights and standardization do not fit its {d} features")
        return cls(role, encoding, tensors["weights"], tensors["mean"], tensors["std"])


class HeteroLrParty:
    """Guest (``labels`` given) or host of a hetero-LR job; a transport ``Handler``.

    ``features`` are the party's rows in the PSI-agreed order (row ``k`` is the ``k``-th
    aligned customer at every party); the guest's ``labels`` are 0/1 in the same order.
    """

    def __init__(
        self,
        name: str,
        features: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        encoding: PartyEncoding | None = None,
        *,
        scoring: LrPart | None = None,
    ) -> None:
        self.name = name
        self._raw = np.asarray(features, dtype=np.float64)
        if self._raw.ndim != 2 or self._raw.shape[1] == 0:
            raise FedsiloError(f"party {name!r}: features must be a non-empty 2-D table")
        self._y = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.encoding = encoding or PartyEncoding.of_numbers(
            [f"x{j}" for j in range(self._raw.shape[1])]
        )
        self.feature_names = self.encoding.feature_names
        if len(self.feature_names) != self._raw.shape[1]:
            raise FedsiloError(f"party {name!r}: its encoding does not fit its features")
        self._scoring = scoring
        self.is_guest = self._y is not None or (scoring is not None and scoring.role == "guest")
        self._channel = PartyChannel(name)
        self._ctx: PublicContext | None = None
        self._job = ""
        self._epoch = 0
        self._guest = ""
        self._hosts: list[str] = []
        self._x = self._raw
        self.weights = np.zeros(0)
        self._penalized = np.zeros(0)
        self._l2 = 0.0
        self._n_train = 1
        self._mask_level: MaskLevel = MASK_LEVELS[HeScheme.CKKS]  # set at setup, per scheme
        self._masks: dict[str, Pending] = {}
        self._u = np.zeros(0)
        self._loss_enc: EncryptedVector | None = None
        self._loss_plain = 0.0
        self._test = np.zeros(0, dtype=np.int64)
        self.test_scores: FloatArray | None = None
        self.routes = self._route_table()
        """``VERTICAL_SETUP`` and the steps after it (the guest's or a host's table)."""

    # ------------------------------------------------------------------ plumbing

    def _route_table(self) -> dict[TaskKind, Callable[[Message], Message]]:
        """``VERTICAL_SETUP`` and the steps after it, one function per task kind: the guest's table
        (residual, loss, unmasked values) or a host's (forward, gradient), both with the
        channel keys, updates and prediction."""
        steps: dict[TaskKind, Callable[[Message], Message]] = {
            TaskKind.VERTICAL_KEYS: self._keys,
            TaskKind.HETERO_LR_UPDATE: self._update,
            TaskKind.HETERO_LR_PREDICT: self._predict,
        }
        if self.is_guest:
            steps[TaskKind.HETERO_LR_RESIDUAL] = self._residual
            steps[TaskKind.HETERO_LR_LOSS] = self._loss
            steps[TaskKind.VERTICAL_UNMASKED] = self._unmasked
        else:
            steps[TaskKind.HETERO_LR_FORWARD] = self._forward
            steps[TaskKind.HETERO_LR_GRADIENT] = self._gradient
        table = {kind: self._after_setup(step) for kind, step in steps.items()}
        table[TaskKind.VERTICAL_SETUP] = self._setup_route
        table[TaskKind.VERTICAL_SCORE_SETUP] = self._setup_route
        return table

    def _setup_route(self, msg: Message) -> Message:
        if msg.kind is TaskKind.VERTICAL_SCORE_SETUP:
            return self.score_setup(msg, ScoreSetup.of(msg))
        setup = SetupTask.of(msg).setup
        if not isinstance(setup, HeteroLrSetup):
            raise ProtocolError(f"party {self.name!r} is a hetero-LR party, not {setup.algorithm}")
        return self.setup(msg, setup)

    def _after_setup(self, step: Callable[[Message], Message]) -> Callable[[Message], Message]:
        def run(msg: Message) -> Message:
            self._context()
            return step(msg)

        return run

    def _reply(
        self,
        msg: Message,
        body: Body | None = None,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> Message:
        content = {} if body is None else body.dump()
        return Message(msg.kind, self._job, msg.round, self.name, content, arrays or {})

    def _context(self) -> PublicContext:
        if self._ctx is None:
            raise NotReadyError(f"party {self.name!r}: got a training step before setup")
        return self._ctx

    def _open(self, msg: Message, sender: str, label: str) -> EncryptedVector:
        sealed = get_blob(msg, f"from:{sender}", self.name)
        ctx = self._context()
        return ctx.deserialize_vector(self._channel.open(sender, label, sealed))

    def _seal(self, recipient: str, label: str, vector: EncryptedVector) -> np.ndarray:
        payload = self._context().serialize_vector(vector)
        return blob(self._channel.seal(recipient, label, payload))

    def _masked(self, key: str, vector: EncryptedVector) -> np.ndarray:
        """Add fresh masks kept under ``key``; the arbiter-bound bytes of the result."""
        masked, self._masks[key] = mask(vector, self._mask_level)
        return blob(self._context().serialize_vector(masked))

    def _take_unmasked(self, msg: Message, key: str) -> FloatArray:
        masks = self._masks.pop(key, None)
        if masks is None:
            raise ProtocolError(f"party {self.name!r}: no masked {key} is pending")
        revealed = msg.arrays.get("masked")
        if revealed is None:
            raise ProtocolError(f"party {self.name!r}: the {key} reply carries no masked values")
        return unmask(revealed, masks, self._mask_level, f"party {self.name!r} {key}")

    # ------------------------------------------------------------------ setup

    def _roles(self, msg: Message, setup: HeteroLrSetup | ScoreSetup) -> Literal["guest", "host"]:
        """HE public key, roles and this party's own mask level for the scheme."""
        self._job = msg.job_id
        self._ctx = load_public(setup.scheme, get_blob(msg, "he_public", self.name))
        self._guest = setup.guest
        self._hosts = list(setup.hosts)
        role: Literal["guest", "host"] = "guest" if self.is_guest else "host"
        if (self.name == self._guest) != self.is_guest or (
            not self.is_guest and self.name not in self._hosts
        ):
            raise ProtocolError(f"party {self.name!r} is a {role}, the setup says otherwise")
        # The mask width is this party's own stated level for the scheme, never the setup's.
        self._mask_level = MASK_LEVELS[self._context().scheme]
        return role

    def score_setup(self, msg: Message, setup: ScoreSetup) -> Message:
        """``VERTICAL_SCORE_SETUP``: score every aligned row with the saved part."""
        part = self._scoring
        if part is None:
            raise ProtocolError(f"party {self.name!r} has no saved part to score with")
        role = self._roles(msg, setup)
        self.mean, self.std, self.weights = part.mean, part.std, part.weights
        self._x = (self._raw - part.mean) / part.std
        if self.is_guest:
            self._x = np.hstack([self._x, np.ones((len(self._x), 1))])
        if self._x.shape[1] != len(part.weights):
            raise ProtocolError(f"party {self.name!r}: its saved weights do not fit its features")
        self._test = np.arange(len(self._x), dtype=np.int64)
        return self._reply(
            msg,
            SetupDone(role=role, features=self._raw.shape[1]),
            {"channel_key": blob(self._channel.public_key)},
        )

    def setup(self, msg: Message, setup: HeteroLrSetup) -> Message:
        """``VERTICAL_SETUP``: HE public key, roles, L2, mask size and the shared split."""
        role = self._roles(msg, setup)
        self._l2 = setup.l2
        train = get_positions(msg, "train", len(self._raw), self.name)
        self._test = get_positions(msg, "test", len(self._raw), self.name)
        self._n_train = len(train)
        # Standardize with this party's own training rows: nothing leaves the party.
        mean = self._raw[train].mean(axis=0)
        std = self._raw[train].std(axis=0)
        std[std == 0] = 1.0
        self.mean, self.std = mean, std
        self._x = (self._raw - mean) / std
        d = self._x.shape[1]
        if self.is_guest:  # the guest holds the intercept (unpenalized) as the last weight
            self._x = np.hstack([self._x, np.ones((len(self._x), 1))])
        self.weights = np.zeros(self._x.shape[1])
        self._penalized = np.ones(self._x.shape[1])
        if self.is_guest:
            self._penalized[d] = 0.0
        return self._reply(
            msg, SetupDone(role=role, features=d), {"channel_key": blob(self._channel.public_key)}
        )

    def _keys(self, msg: Message) -> Message:
        Empty.of(msg)
        peers = {
            name[len("key:") :]: arr.tobytes()
            for name, arr in msg.arrays.items()
            if name.startswith("key:")
        }
        self._channel.connect(self._job, peers)
        return self._reply(msg)

    # ------------------------------------------------------------------ training

    def _forward(self, msg: Message) -> Message:
        """Host: ``[[u_h / 4]]`` for the batch, sealed for the guest."""
        Empty.of(msg)
        rows = get_positions(msg, "rows", len(self._x), self.name)
        self._epoch = msg.round
        self._u = self._x[rows] @ self.weights
        enc = self._context().encrypt(0.25 * self._u)
        return self._reply(msg, arrays={f"to:{self._guest}": self._seal(self._guest, "u", enc)})

    def _residual(self, msg: Message) -> Message:
        """Guest: ``[[d]] = [[z/4]] + 1/2 - y`` for the hosts, its masked gradient, loss terms."""
        if self._y is None:
            raise ProtocolError(f"party {self.name!r} is a host; only the guest has labels")
        Empty.of(msg)
        rows = get_positions(msg, "rows", len(self._x), self.name)
        self._epoch = msg.round
        b, n = len(rows), self._n_train
        quarter_hosts = self._open(msg, self._hosts[0], "u")
        for host in self._hosts[1:]:
            quarter_hosts = quarter_hosts + self._open(msg, host, "u")
        u_g = self._x[rows] @ self.weights
        y = self._y[rows]
        d = quarter_hosts.add_plain(0.25 * u_g + 0.5 - y)
        arrays = {f"to:{h}": self._seal(h, "d", d) for h in self._hosts}
        arrays["masked_gradient"] = self._masked("gradient", d.matmul_plain(self._x[rows] / b))
        # Taylor loss: n*L = n*log 2 + sum_p s_p + sum_i c_i z_i with c = 1/4 - y/2 and
        # s_p = sum_i u_p,i d_i / 2 (each party's share), all scaled by 1/n_train.
        c = 0.25 - 0.5 * y
        terms = quarter_hosts.matmul_plain((4.0 * c / n)[:, None]) + d.matmul_plain(
            (0.5 * u_g / n)[:, None]
        )
        self._loss_enc = terms if self._loss_enc is None else self._loss_enc + terms
        self._loss_plain += (b * math.log(2.0) + float(c @ u_g) + b * self._penalty()) / n
        return self._reply(msg, arrays=arrays)

    def _penalty(self) -> float:
        return 0.5 * self._l2 * float(np.sum((self.weights * self._penalized) ** 2))

    def _gradient(self, msg: Message) -> Message:
        """Host: masked ``[[X_h^T d / b]]`` for the arbiter, loss share sealed for the guest."""
        Empty.of(msg)
        rows = get_positions(msg, "rows", len(self._x), self.name)
        if len(rows) != len(self._u):
            raise ProtocolError(f"party {self.name!r}: gradient rows differ from forward rows")
        b, n = len(rows), self._n_train
        d = self._open(msg, self._guest, "d")
        share = d.matmul_plain((0.5 * self._u / n)[:, None]).add_plain([b * self._penalty() / n])
        return self._reply(
            msg,
            arrays={
                "masked_gradient": self._masked("gradient", d.matmul_plain(self._x[rows] / b)),
                f"to:{self._guest}": self._seal(self._guest, "loss_share", share),
            },
        )

    def _update(self, msg: Message) -> Message:
        """Unmask this party's gradient, step; the guest also collects the hosts' loss shares."""
        gradient = self._take_unmasked(msg, "gradient")
        if gradient.shape != self.weights.shape:
            raise ProtocolError(f"party {self.name!r}: gradient has the wrong length")
        lr = LrUpdate.of(msg).learning_rate
        if self.is_guest:
            for host in self._hosts:
                share = self._open(msg, host, "loss_share")
                self._loss_enc = share if self._loss_enc is None else self._loss_enc + share
        self.weights = self.weights - lr * (gradient + self._l2 * self._penalized * self.weights)
        return self._reply(msg)

    def _loss(self, msg: Message) -> Message:
        """Guest: the epoch's encrypted Taylor loss, masked, for the arbiter."""
        Empty.of(msg)
        if self._loss_enc is None:
            raise ProtocolError(f"party {self.name!r}: no loss terms were collected this epoch")
        masked = self._masked("loss", self._loss_enc)
        self._loss_enc = None
        return self._reply(msg, arrays={"masked": masked})

    # ------------------------------------------------------------------ prediction

    def _predict(self, msg: Message) -> Message:
        """Host: ``[[u_h]]`` on the held-out rows for the guest. Guest: masked ``[[z]]``."""
        Empty.of(msg)
        rows = self._test
        u = self._x[rows] @ self.weights
        if not self.is_guest:
            enc = self._context().encrypt(u)
            return self._reply(
                msg, arrays={f"to:{self._guest}": self._seal(self._guest, "score", enc)}
            )
        total = self._open(msg, self._hosts[0], "score")
        for host in self._hosts[1:]:
            total = total + self._open(msg, host, "score")
        return self._reply(msg, arrays={"masked": self._masked("scores", total.add_plain(u))})

    def _unmasked(self, msg: Message) -> Message:
        what = Unmask.of(msg).what
        if what == "loss":
            loss = float(self._take_unmasked(msg, "loss")[0]) + self._loss_plain
            self._loss_plain = 0.0
            return self._reply(msg, LossReply(loss=loss))
        if self.is_guest:
            z = self._take_unmasked(msg, "scores")
            self.test_scores = expit(z)  # stable: an extreme z is 0 or 1, no overflow
            if self._y is None:  # scoring new customers: the scores stay here
                return self._reply(msg, Scored(rows=len(z)))
            metrics = binary_metrics(self._y[self._test], self.test_scores)
            return self._reply(msg, MetricsReply(metrics=metrics))
        raise ProtocolError(f"party {self.name!r}: unexpected unmasked value {what!r}")

    # ------------------------------------------------------------------ outputs

    def save(self, path: str | Path) -> Path:
        """Write this party's model part (its weights, standardization and encoding) as
        safetensors; the encoding is JSON in the metadata."""
        path = Path(path)
        tensors = {"weights": self.weights, "mean": self.mean, "std": self.std}
        meta = {
            "format": LR_PART_FORMAT,
            "party": self.name,
            "role": "guest" if self.is_guest else "host",
            "features": ",".join(self.feature_names),
            "intercept": "last weight" if self.is_guest else "none",
            "encoding": self.encoding.model_dump_json(),
        }
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta
        )
        return path
