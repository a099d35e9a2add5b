"""A vertical party's SecureBoost role in a job: route tables over SecureBoostGuest / Host.

``VERTICAL_SETUP`` (algorithm ``secureboost``) carries the tree parameters, the HE scheme and
the shared train/held-out positions. The role trains on its **training** rows only: the guest
is a :class:`~fedsilo.vertical.secureboost.SecureBoostGuest` over ``x[train]``, ``y[train]``, a
host a :class:`~fedsilo.vertical.secureboost.SecureBoostHost` over ``x[train]``; the
coordinator's :func:`~fedsilo.vertical.secureboost.relay` turns the guest's packed host tasks
into ``SB_*`` messages for the hosts (:meth:`SecureBoostRole.routes`).

Prediction reuses the relay: an ``SB_STEP`` whose start body says ``phase = "predict"`` makes
the guest route **every** aligned row through its trees; host decisions are ``SB_ROUTE`` tasks
marked ``phase = "predict"``, answered by each host from its own split table over all its
aligned rows. The guest then computes held-out (``test``) and ``train`` metrics itself and
returns them, with its per-tree losses, in its final ``done`` reply. Only metrics leave the
guest; scores (kept in :attr:`SecureBoostRole.scores`), labels and trees stay with it. This is
the one SecureBoost prediction path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy.special import expit

from fedsilo.errors import ConfigError, DataError, NotReadyError, ProtocolError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.vertical.bodies import (
    HostSplits,
    PartyImportance,
    SbRoute,
    SbStep,
    SbStepReply,
    ScoreSetup,
    SecureBoostSetup,
    SetupDone,
    SetupTask,
)
from fedsilo.vertical.encoding import PartyEncoding
from fedsilo.vertical.importance import sb_guest_importance, sb_host_importance
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.secureboost import SecureBoostGuest, SecureBoostHost, Tree, TreeParams
from fedsilo.vertical.secureboost.boost import RouteQuery, route
from fedsilo.vertical.secureboost.relay import GuestSteps
from fedsilo.vertical.wire import get_bits, get_positions

Tasks = dict[str, Message]
Route = Callable[[Message], Message]


class SbRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    feature: int = Field(ge=0)
    threshold: float


SB_PART_FORMAT = "fedsilo.secureboost/2"
"""The ``format`` of a SecureBoost part. Version 1 (only the guest's said so) had no role and
no encoding; such a part is refused (see :meth:`SbPart.parse`)."""


class SbPart(BaseModel):
    """One party's saved SecureBoost part (:meth:`SecureBoostRole.save`): the guest's trees,
    base score, host order and own split table, or a host's split table; its role and its
    encoding (column types, category values, missing-value fills)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    format: Literal["fedsilo.secureboost/2"]
    party: str
    role: Literal["guest", "host"]
    features: list[str] = Field(min_length=1)
    encoding: PartyEncoding
    records: list[SbRecord]
    trees: list[dict[str, list[float]]] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    base_score: float = 0.0

    @property
    def is_guest(self) -> bool:
        return self.role == "guest"

    @classmethod
    def parse(cls, raw: Any, party: str, where: str = "its model") -> SbPart:
        owner = raw.get("party") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and owner == party and raw.get("format") != SB_PART_FORMAT:
            raise DataError(
                f"party {party!r}: {where} was written by an earlier fedsilo (format "
                f"{raw.get('format', '1')!r}, expected {SB_PART_FORMAT!r}): it lacks the "
                "training run's column types, category values and missing-value fills, which "
                "scoring applies. Retrain the run to score with it."
            )
        try:
            part = cls.model_validate(raw)
        except ValidationError as exc:
            raise DataError(
                f"party {party!r}: {where} is not a SecureBoost part of this fedsilo "
                f"({exc.error_count()} problem(s), first: {_first(exc)}). Put {party!r}'s own "
                "part there, or retrain."
            ) from None
        if (
            part.party != party
            or any(r.feature >= len(part.features) for r in part.records)
            or part.features != part.encoding.feature_names
            or not part.encoding.fitted
        ):
            raise DataError(
                f"party {party!r}: {where} is not this party's part (it is party "
                f"{part.party!r}'s, role {part.role!r}). Put {party!r}'s own part there (its "
                ".json from the models of the run it trained in)."
            )
        return part

    @classmethod
    def load(cls, path: Path, party: str) -> SbPart:
        where = f"saved SecureBoost part {path}"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"party {party!r}: {where} cannot be read ({exc}): it is damaged or not a "
                "model part. Copy the party's part again from where its training run wrote "
                "it, or retrain."
            ) from None
        return cls.parse(raw, party, where)


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    at = ".".join(str(x) for x in error["loc"])
    return f"{at}: {error['msg']}" if at else str(error["msg"])


class SecureBoostRole:
    """Guest (``labels`` given) or host of a SecureBoost job over PSI-aligned rows."""

    def __init__(
        self,
        name: str,
        features: npt.ArrayLike,
        labels: npt.ArrayLike | None,
        encoding: PartyEncoding,
        *,
        scoring: SbPart | None = None,
    ) -> None:
        self.name = name
        self._x = np.asarray(features, dtype=np.float64)
        self._y = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.encoding = encoding
        self.feature_names = encoding.feature_names
        self._scoring = scoring
        self._guest: SecureBoostGuest | None = None
        self._host: SecureBoostHost | None = None
        self._predict_host: SecureBoostHost | None = None
        if scoring is not None and not scoring.is_guest:
            table = [(r.feature, r.threshold) for r in scoring.records]
            self._predict_host = SecureBoostHost(name, self._x, split_table=table)
        self._train = np.zeros(0, dtype=np.int64)
        self._test = np.zeros(0, dtype=np.int64)
        self._predicting = GuestSteps(name)
        self.scores: npt.NDArray[np.float64] | None = None
        """The guest's predicted probabilities for every aligned row (after prediction)."""
        self.routes = self._route_table()

    @property
    def is_guest(self) -> bool:
        return self._y is not None or (self._scoring is not None and self._scoring.is_guest)

    def _route_table(self) -> dict[TaskKind, Route]:
        """The task kinds this role answers after its setup, each to one function."""
        setups = {
            TaskKind.VERTICAL_SETUP: self._setup_route,
            TaskKind.VERTICAL_SCORE_SETUP: self.score_setup,
        }
        if self.is_guest:
            return {**setups, TaskKind.SB_STEP: self._step}
        return {
            **setups,
            TaskKind.SB_SETUP: lambda task: self._need_host(task).setup(task),
            TaskKind.SB_GRADIENTS: lambda task: self._need_host(task).gradients(task),
            TaskKind.SB_HISTOGRAMS: lambda task: self._need_host(task).histograms(task),
            TaskKind.SB_SPLIT: lambda task: self._need_host(task).split(task),
            TaskKind.SB_ROUTE: self._route,
        }

    def _setup_route(self, task: Message) -> Message:
        setup = SetupTask.of(task).setup
        if not isinstance(setup, SecureBoostSetup):
            raise ProtocolError(
                f"party {self.name!r} is a SecureBoost party, not {setup.algorithm}"
            )
        return self.setup(task, setup)

    def _need_host(self, task: Message) -> SecureBoostHost:
        if self._host is None:
            raise NotReadyError(f"host {self.name!r}: {task.kind.value} before setup")
        return self._host

    def _step(self, task: Message) -> Message:
        body = SbStep.of(task)
        if self._scoring is not None and self._scoring.is_guest:
            if body.phase != "predict":
                raise ProtocolError(f"guest {self.name!r} scores with a saved part; it trains not")
            return self._predicting.step(task, body, lambda: self._score(task.job_id))
        if self._guest is None:
            raise NotReadyError(f"guest {self.name!r}: {task.kind.value} before setup")
        if body.phase == "predict":
            return self._predicting.step(task, body, lambda: self._predict(task.job_id))
        return self._guest.step(task)

    def _route(self, task: Message) -> Message:
        if SbRoute.of(task).phase == "predict":
            if self._predict_host is None:
                host = self._need_host(task)
                self._predict_host = SecureBoostHost.from_export(self.name, host.export(), self._x)
            return self._predict_host.route(task)
        return self._need_host(task).route(task)

    def score_setup(self, task: Message) -> Message:
        """``VERTICAL_SCORE_SETUP``: this party's saved part scores its aligned rows."""
        setup = ScoreSetup.of(task)
        if self._scoring is None or setup.algorithm != "secureboost":
            raise ProtocolError(f"party {self.name!r} has no saved SecureBoost part to score with")
        if (setup.guest == self.name) != self.is_guest or (
            not self.is_guest and self.name not in setup.hosts
        ):
            role = "guest" if self.is_guest else "host"
            raise ProtocolError(f"party {self.name!r} is a {role}, the setup says otherwise")
        self._predicting = GuestSteps(self.name)
        done = SetupDone(role="guest" if self.is_guest else "host")
        return Message(task.kind, task.job_id, task.round, self.name, done.dump())

    # ------------------------------------------------------------------ setup

    def setup(self, task: Message, setup: SecureBoostSetup) -> Message:
        try:
            params = TreeParams(**setup.params)  # type: ignore[arg-type]
        except (TypeError, ConfigError) as exc:
            raise ProtocolError(
                f"party {self.name!r}: malformed secureboost params: {exc}"
            ) from None
        n = len(self._x)
        self._train = get_positions(task, "train", n, self.name)
        self._test = get_positions(task, "test", n, self.name)
        self._predicting = GuestSteps(self.name)
        self._predict_host, self.scores = None, None
        x_train = self._x[self._train]
        if self._y is not None:
            self._guest = SecureBoostGuest(
                self.name,
                x_train,
                self._y[self._train],
                params,
                scheme=setup.scheme,
                seed=setup.seed,
                paillier_bits=setup.paillier_bits,
            )
        else:
            self._host = SecureBoostHost(self.name, x_train)
        done = SetupDone(role="guest" if self.is_guest else "host")
        return Message(task.kind, task.job_id, task.round, self.name, done.dump())

    # ------------------------------------------------------------------ prediction

    def _predict(self, job_id: str) -> Generator[Tasks, Tasks, SbStepReply | None]:
        """Route all aligned rows through the trees; metrics on the train and held-out rows."""
        assert self._guest is not None and self._y is not None
        part = SbPart.parse(self.model(), self.name)
        model_trees = part.trees
        proba = yield from self._route_all(job_id, part)
        outcome = self._guest.outcome
        assert outcome is not None
        return SbStepReply(
            done=True,
            test=binary_metrics(self._y[self._test], proba[self._test]),
            train=binary_metrics(self._y[self._train], proba[self._train]),
            train_loss_per_tree=list(outcome.train_loss),
            valid_loss_per_tree=list(outcome.valid_loss),
            n_trees=len(model_trees),
        )

    def _score(self, job_id: str) -> Generator[Tasks, Tasks, SbStepReply | None]:
        """Scoring job: route every aligned new customer through the saved trees."""
        assert self._scoring is not None
        proba = yield from self._route_all(job_id, self._scoring)
        return SbStepReply(done=True, scored=len(proba))

    def _route_all(
        self, job_id: str, model: SbPart
    ) -> Generator[Tasks, Tasks, npt.NDArray[np.float64]]:
        """Every aligned row through the trees (each split asked of its owner); probabilities."""
        trees = [Tree.from_json(t) for t in model.trees]
        hosts = list(model.hosts)
        feats = np.array([r.feature for r in model.records], dtype=np.int64)
        thr = np.array([r.threshold for r in model.records], dtype=np.float64)
        gen = route(trees, np.arange(len(self._x), dtype=np.int64))
        who = f"guest {self.name!r}"
        try:
            query: RouteQuery = next(gen)
            while True:
                answer: dict[int, Any] = {}
                tasks: Tasks = {}
                for party, (recs, rws) in query.queries.items():
                    if party == 0:
                        answer[0] = self._x[rws, feats[recs]] <= thr[recs]
                    else:
                        arrays = {"records": recs, "rows": rws}
                        body = SbRoute(phase="predict").dump()
                        tasks[hosts[party - 1]] = Message(
                            TaskKind.SB_ROUTE, job_id, 0, self.name, body, arrays
                        )
                if tasks:
                    replies = yield tasks
                    for h, sent in tasks.items():
                        size = len(sent.arrays["rows"])
                        answer[hosts.index(h) + 1] = get_bits(replies[h], "left", size, who)
                query = gen.send(answer)
        except StopIteration as stop:
            leaves = stop.value
        margin = np.full(len(self._x), model.base_score)
        for tree, leaf in zip(trees, leaves, strict=True):
            margin += np.asarray(tree.weight)[leaf]
        proba: npt.NDArray[np.float64] = expit(margin)  # stable for any margin
        self.scores = proba
        return proba

    # ------------------------------------------------------------------ importance

    def importance(self, splits: HostSplits | None, *, named: bool) -> PartyImportance:
        """Split count and gain per feature: the guest's from its trees (with each host's
        gains by record), a host's from the gains of its own records (``splits``)."""
        if self._guest is not None and self._guest.outcome is not None:
            trees, hosts = self._guest.outcome.trees, self._guest.hosts
            return sb_guest_importance(trees, self.feature_names, hosts, named=named)
        if self._host is not None:
            table = self._host.split_table
            return sb_host_importance(
                self.name, table, self.feature_names, splits or HostSplits(), named=named
            )
        raise NotReadyError(f"party {self.name!r}: vertical_importance before training")

    # ------------------------------------------------------------------ outputs

    def model(self) -> dict[str, Any]:
        """This party's model part: the guest's trees + own split table, or a host's table;
        its role, feature names and encoding."""
        if self._guest is not None:
            part = self._guest.model()
        elif self._host is not None:
            part = self._host.export()
        else:
            raise ProtocolError(f"party {self.name!r} has no SecureBoost model yet")
        return {
            **part,
            "format": SB_PART_FORMAT,
            "party": self.name,
            "role": "guest" if self.is_guest else "host",
            "features": self.feature_names,
            "encoding": self.encoding.model_dump(mode="json"),
        }

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.model(), indent=1))
        return path
