"""A vertical party's SecureBoost role in a job: delegates to SecureBoostGuest / SecureBoostHost.

``VERTICAL_SETUP`` (algorithm ``secureboost``) carries the tree parameters, the HE scheme and
the shared train/held-out positions. The role trains on its **training** rows only: the guest
is a :class:`~fedsilo.vertical.secureboost.SecureBoostGuest` over ``x[train]``, ``y[train]``, a
host a :class:`~fedsilo.vertical.secureboost.SecureBoostHost` over ``x[train]``; every ``SB_*``
task of training goes to them unchanged (the coordinator's
:func:`~fedsilo.vertical.secureboost.relay` forwards them).

Prediction reuses the relay: an ``SB_STEP`` whose start body says ``phase = "predict"`` makes
the guest route **every** aligned row through its trees; host decisions are ``SB_ROUTE`` tasks
marked ``phase = "predict"``, answered by each host from its own split table over all its
aligned rows. The guest then computes held-out (``test``) and ``train`` metrics itself and
returns them, with its per-tree losses, in its final ``done`` reply. Only metrics leave the
guest; scores, labels and trees stay with it.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import FedsiloError, ProtocolError
from fedsilo.privacy.he import HeScheme
from fedsilo.protocol.messages import Fault, Message, TaskKind
from fedsilo.vertical.hetero_lr.wire import get_positions
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.secureboost import SecureBoostGuest, SecureBoostHost, Tree, TreeParams
from fedsilo.vertical.secureboost.boost import RouteQuery, route
from fedsilo.vertical.secureboost.driver import guest_model_of
from fedsilo.vertical.secureboost.guest import JOB
from fedsilo.vertical.secureboost.host import blob, rows_of

PREDICT = "predict"
Tasks = dict[str, Message]


class SecureBoostRole:
    """Guest (``labels`` given) or host of a SecureBoost job over PSI-aligned rows."""

    def __init__(
        self,
        name: str,
        features: npt.ArrayLike,
        labels: npt.ArrayLike | None,
        feature_names: list[str],
    ) -> None:
        self.name = name
        self._x = np.asarray(features, dtype=np.float64)
        self._y = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.feature_names = feature_names
        self._guest: SecureBoostGuest | None = None
        self._host: SecureBoostHost | None = None
        self._predict_host: SecureBoostHost | None = None
        self._params = TreeParams()
        self._scheme = HeScheme.CKKS
        self._train = np.zeros(0, dtype=np.int64)
        self._test = np.zeros(0, dtype=np.int64)
        self._predicting: Generator[Tasks, Tasks, dict[str, Any]] | None = None
        self._hosts: list[str] = []

    @property
    def is_guest(self) -> bool:
        return self._y is not None

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)  # the agent has decoded it once already: it is well formed
        try:
            if task.kind is TaskKind.VERTICAL_SETUP:
                return self._setup(task).encode()
            if self.is_guest:
                if self._guest is None:
                    raise ProtocolError(f"guest {self.name!r}: {task.kind.value} before setup")
                if task.kind is TaskKind.SB_STEP and (
                    task.body.get("phase") == PREDICT or self._predicting is not None
                ):
                    return self._predict_step(task)
                return self._guest.handle(data)
            if self._host is None:
                raise ProtocolError(f"host {self.name!r}: {task.kind.value} before setup")
            if task.kind is TaskKind.SB_ROUTE and task.body.get("phase") == PREDICT:
                if self._predict_host is None:
                    self._predict_host = SecureBoostHost.from_export(
                        self.name, self._host.export(), self._x
                    )
                return self._predict_host.handle(data)
            return self._host.handle(data)
        except FedsiloError as exc:
            fault = Fault.of(exc)
        return Message(task.kind, task.job_id, task.round, self.name, fault=fault).encode()

    # ------------------------------------------------------------------ setup

    def _setup(self, task: Message) -> Message:
        body = task.body
        try:
            self._params = TreeParams(**body["params"])
            self._scheme = HeScheme(str(body["scheme"]))
            seed, bits = int(body["seed"]), int(body["paillier_bits"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(
                f"party {self.name!r}: malformed secureboost setup: {exc}"
            ) from None
        n = len(self._x)
        self._train = get_positions(task, "train", n, self.name)
        self._test = get_positions(task, "test", n, self.name)
        self._predicting, self._predict_host = None, None
        x_train = self._x[self._train]
        if self._y is not None:
            self._guest = SecureBoostGuest(
                self.name,
                x_train,
                self._y[self._train],
                self._params,
                scheme=self._scheme,
                seed=seed,
                paillier_bits=bits,
            )
        else:
            self._host = SecureBoostHost(self.name, x_train)
        role = "guest" if self.is_guest else "host"
        return Message(task.kind, task.job_id, task.round, self.name, {"role": role})

    # ------------------------------------------------------------------ prediction

    def _predict_step(self, task: Message) -> bytes:
        if task.body.get("start"):
            self._hosts = sorted(str(h) for h in task.body["hosts"])
            self._predicting = self._predict()
            try:
                tasks = next(self._predicting)
            except StopIteration as stop:
                return self._done(task, stop.value)
        else:
            if self._predicting is None:
                raise ProtocolError(f"guest {self.name!r}: prediction step before its start")
            replies: Tasks = {}
            for h in self._hosts:
                if f"from_{h}" not in task.arrays:
                    continue
                msg = Message.decode(task.arrays[f"from_{h}"].tobytes())
                if msg.error or msg.sender != h:
                    raise ProtocolError(f"host {h!r} failed to route: {msg.error or msg.sender}")
                replies[h] = msg
            try:
                tasks = self._predicting.send(replies)
            except StopIteration as stop:
                return self._done(task, stop.value)
        arrays = {f"to_{h}": blob(m.encode()) for h, m in tasks.items()}
        return Message(
            TaskKind.SB_STEP, JOB, task.round, self.name, {"done": False}, arrays
        ).encode()

    def _done(self, task: Message, result: dict[str, Any]) -> bytes:
        self._predicting = None
        body = {"done": True, **result}
        return Message(TaskKind.SB_STEP, JOB, task.round, self.name, body).encode()

    def _predict(self) -> Generator[Tasks, Tasks, dict[str, Any]]:
        """Route all aligned rows through the trees; metrics on the train and held-out rows."""
        assert self._guest is not None and self._y is not None
        model = self.model()
        trees = [Tree.from_json(t) for t in model["trees"]]
        hosts: list[str] = list(model["hosts"])
        feats = np.array([r["feature"] for r in model["records"]], dtype=np.int64)
        thr = np.array([r["threshold"] for r in model["records"]], dtype=np.float64)
        gen = route(trees, np.arange(len(self._x), dtype=np.int64))
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
                        tasks[hosts[party - 1]] = Message(
                            TaskKind.SB_ROUTE, JOB, 0, self.name, {"phase": PREDICT}, arrays
                        )
                if tasks:
                    replies = yield tasks
                    for h, sent in tasks.items():
                        if h not in replies:
                            raise ProtocolError(f"host {h!r} did not answer a routing query")
                        left = rows_of(replies[h].arrays, "left", 2).astype(bool)
                        if left.shape != sent.arrays["rows"].shape:
                            raise ProtocolError(f"host {h!r}: routing answer has the wrong size")
                        answer[hosts.index(h) + 1] = left
                query = gen.send(answer)
        except StopIteration as stop:
            leaves = stop.value
        margin = np.full(len(self._x), float(model["base_score"]))
        for tree, leaf in zip(trees, leaves, strict=True):
            margin += np.asarray(tree.weight)[leaf]
        proba = 1.0 / (1.0 + np.exp(-margin))
        outcome = self._guest.outcome
        assert outcome is not None
        return {
            "test": binary_metrics(self._y[self._test], proba[self._test]),
            "train": binary_metrics(self._y[self._train], proba[self._train]),
            "train_loss_per_tree": list(outcome.train_loss),
            "valid_loss_per_tree": list(outcome.valid_loss),
            "n_trees": len(trees),
        }

    # ------------------------------------------------------------------ outputs

    def model(self) -> dict[str, Any]:
        """This party's model part: the guest's trees + own split table, or a host's table."""
        if self._guest is not None:
            part = guest_model_of(self._guest, self._params, self._scheme)
        elif self._host is not None:
            part = self._host.export()
        else:
            raise ProtocolError(f"party {self.name!r} has no SecureBoost model yet")
        return {**part, "party": self.name, "features": self.feature_names}

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.model(), indent=1))
        return path
