"""Entry points: train and predict with SecureBoost over any :class:`Transport`.

::

    result = train_secureboost(guest_x, y, {"host": host_x}, TreeParams(n_trees=20), scheme="ckks")
    proba = predict_secureboost(result.guest_model, guest_test_x, {"host": host_test_x},
                                result.host_models)

The coordinator side (:func:`relay`) only forwards the guest's ``SB_STEP`` output to hosts and
their replies back: it never decrypts and holds no key. Each party's model part is JSON
(:meth:`SecureBoostResult.save`): the guest's trees (party, feature index, bin, record id,
leaf weights) plus its own split table; each host's split table (record -> feature, threshold).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.privacy.he import HeScheme
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Handler, InProcessTransport, Transport
from fedsilo.vertical.secureboost.boost import RouteQuery, route
from fedsilo.vertical.secureboost.guest import JOB, SecureBoostGuest
from fedsilo.vertical.secureboost.host import SecureBoostHost, blob, rows_of
from fedsilo.vertical.secureboost.tree import FloatArray, Tree, TreeParams

GUEST = "guest"


@dataclass
class SecureBoostResult:
    guest_model: dict[str, Any]
    host_models: dict[str, dict[str, Any]]
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)

    @property
    def trees(self) -> list[Tree]:
        return [Tree.from_json(t) for t in self.guest_model["trees"]]

    def save(self, directory: str | Path) -> dict[str, Path]:
        """One JSON file per party: ``guest.json`` and ``<host>.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {GUEST: out / "guest.json"}
        paths[GUEST].write_text(json.dumps(self.guest_model, indent=1))
        for name, model in self.host_models.items():
            paths[name] = out / f"{name}.json"
            paths[name].write_text(json.dumps(model, indent=1))
        return paths


def relay(
    transport: Transport,
    guest: str,
    hosts: list[str],
    *,
    timeout_s: float = 3600.0,
    start: Mapping[str, Any] | None = None,
    on_tasks: Callable[[Mapping[str, Message]], None] | None = None,
) -> Message:
    """Coordinator loop: start the guest, forward its host tasks and the replies until done.

    ``start`` adds keys to the first ``SB_STEP`` body (e.g. a phase for the guest's handler);
    ``on_tasks`` sees every batch of host tasks before it is sent (e.g. to time the trees).
    Returns the guest's final (``done``) reply.
    """

    def ask_guest(msg: Message) -> Message:
        got = transport.exchange({guest: msg}, timeout_s=timeout_s)
        if guest not in got.replies:
            raise RoundFailedError(f"SecureBoost guest {guest!r}: {got.failures.get(guest)}")
        reply = got.replies[guest]
        if reply.error:
            raise RoundFailedError(reply.error)
        return reply

    step = 0
    body = {**(start or {}), "start": True, "hosts": hosts}
    reply = ask_guest(Message(TaskKind.SB_STEP, JOB, step, "coordinator", body))
    while not reply.body.get("done"):
        step += 1
        try:
            tasks = {
                h: Message.decode(reply.arrays[f"to_{h}"].tobytes())
                for h in hosts
                if f"to_{h}" in reply.arrays
            }
        except ProtocolError as exc:
            raise RoundFailedError(f"SecureBoost step {step}: the guest sent {exc}") from None
        if on_tasks is not None:
            on_tasks(tasks)
        got = transport.exchange(tasks, timeout_s=timeout_s)
        if got.failures:
            raise RoundFailedError(f"SecureBoost step {step}: hosts failed: {got.failures}")
        arrays = {f"from_{h}": blob(m.encode()) for h, m in got.replies.items()}
        reply = ask_guest(Message(TaskKind.SB_STEP, JOB, step, "coordinator", {}, arrays))
    return reply


def guest_model_of(guest: SecureBoostGuest, params: TreeParams, scheme: HeScheme) -> dict[str, Any]:
    if guest.outcome is None or guest.local is None:
        raise ProtocolError("the guest finished without a model")
    return {
        "format": "fedsilo.secureboost/1",
        "scheme": scheme.value,
        "params": params.__dict__,
        "base_score": guest.outcome.base_score,
        "hosts": guest.hosts,
        "trees": [t.to_json() for t in guest.outcome.trees],
        "records": [{"feature": f, "threshold": t} for f, t in guest.local.table],
    }


def train_secureboost(
    guest_x: npt.ArrayLike,
    y: npt.ArrayLike,
    host_xs: Mapping[str, npt.ArrayLike],
    params: TreeParams,
    *,
    scheme: HeScheme | str = HeScheme.CKKS,
    seed: int = 0,
    paillier_bits: int = 2048,
    transport: Transport | None = None,
    recorders: Mapping[str, Any] | None = None,
) -> SecureBoostResult:
    """Train on PSI-aligned rows (row i is the same customer at every party).

    Without ``transport`` the parties run in this process (:class:`InProcessTransport`);
    ``recorders`` optionally wraps a party's handler (``name -> callable(handler) -> handler``),
    e.g. to log every message it receives.
    """
    scheme = HeScheme(scheme)
    guest = SecureBoostGuest(
        GUEST, guest_x, y, params, scheme=scheme, seed=seed, paillier_bits=paillier_bits
    )
    hosts = {name: SecureBoostHost(name, x) for name, x in host_xs.items()}
    if GUEST in hosts:
        raise ProtocolError(f"a host may not be called {GUEST!r}")
    if transport is None:
        handlers: dict[str, Handler] = {GUEST: guest, **hosts}
        for name, wrap in (recorders or {}).items():
            handlers[name] = wrap(handlers[name])
        transport = InProcessTransport(handlers)
    relay(transport, GUEST, sorted(hosts))
    assert guest.outcome is not None
    return SecureBoostResult(
        guest_model_of(guest, params, scheme),
        {name: h.export() for name, h in hosts.items()},
        guest.outcome.train_loss,
        guest.outcome.valid_loss,
    )


def predict_secureboost(
    guest_model: dict[str, Any],
    guest_x: npt.ArrayLike,
    host_xs: Mapping[str, npt.ArrayLike],
    host_models: Mapping[str, dict[str, Any]],
    *,
    transport: Transport | None = None,
) -> FloatArray:
    """Probabilities for aligned rows; each host answers its own splits (``SB_ROUTE``)."""
    x = np.asarray(guest_x, dtype=np.float64)
    trees = [Tree.from_json(t) for t in guest_model["trees"]]
    hosts: list[str] = list(guest_model["hosts"])
    if transport is None:
        transport = InProcessTransport(
            {h: SecureBoostHost.from_export(h, host_models[h], host_xs[h]) for h in hosts}
        )
    feats = np.array([r["feature"] for r in guest_model["records"]], dtype=np.int64)
    thr = np.array([r["threshold"] for r in guest_model["records"]], dtype=np.float64)
    rows = np.arange(x.shape[0], dtype=np.int64)
    gen = route(trees, rows)
    try:
        query: RouteQuery = next(gen)
        while True:
            answer: dict[int, Any] = {}
            tasks = {}
            for party, (recs, rws) in query.queries.items():
                if party == 0:
                    answer[0] = x[rws, feats[recs]] <= thr[recs]
                else:
                    arrays = {"records": recs, "rows": rws}
                    tasks[hosts[party - 1]] = Message(TaskKind.SB_ROUTE, JOB, 0, GUEST, {}, arrays)
            if tasks:
                got = transport.exchange(tasks, timeout_s=3600.0)
                for h in tasks:
                    msg = got.replies.get(h)
                    if msg is None or msg.error:
                        reason = got.failures.get(h) if msg is None else msg.error
                        raise RoundFailedError(f"prediction: host {h!r} failed: {reason}")
                    answer[hosts.index(h) + 1] = rows_of(msg.arrays, "left", 2).astype(bool)
            query = gen.send(answer)
    except StopIteration as stop:
        leaves = stop.value
    margin = np.full(x.shape[0], float(guest_model["base_score"]))
    for tree, leaf in zip(trees, leaves, strict=True):
        margin += np.asarray(tree.weight)[leaf]
    return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)
