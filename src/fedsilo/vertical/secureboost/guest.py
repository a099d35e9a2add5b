"""The SecureBoost guest (label holder): gradients, key, split choice, tree structure.

The guest's protocol is straight-line code in a generator (:meth:`SecureBoostGuest._protocol`)
that yields the tasks it wants delivered to hosts and receives their replies. The handler
(:meth:`SecureBoostGuest.handle`, task ``SB_STEP``) advances it one step per relay, so the
coordinator only forwards opaque messages: in-process now, over gRPC unchanged.

What the guest receives from hosts: their feature counts, encrypted bin sums (decrypted here),
split record ids with the left/right partition of a node's rows, and branch bits. Never a host
feature value or threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError, ErrorCode, FedsiloError, ProtocolError
from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig, generate
from fedsilo.privacy.he.ckks import CkksPublicContext
from fedsilo.protocol.messages import Fault, Message, TaskKind
from fedsilo.vertical.secureboost import crypto
from fedsilo.vertical.secureboost.boost import (
    BoostOutcome,
    LocalParty,
    NewTree,
    RouteQuery,
    boost,
    split_rows,
)
from fedsilo.vertical.secureboost.host import blob, rows_of
from fedsilo.vertical.secureboost.tree import HistRequest, SplitRequest, TreeParams

log = logging.getLogger(__name__)
JOB = "secureboost"
Tasks = dict[str, Message]


class SecureBoostGuest:
    """Handles ``SB_STEP``: the guest side of training."""

    def __init__(
        self,
        name: str,
        features: npt.ArrayLike,
        labels: npt.ArrayLike,
        params: TreeParams,
        *,
        scheme: HeScheme | str = HeScheme.CKKS,
        seed: int = 0,
        paillier_bits: int = 2048,
    ) -> None:
        self.name = name
        self._x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if y.ndim != 1 or len(y) != len(self._x) or not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"guest {name!r}: labels must be 0/1, one per feature row")
        self._y = y
        self._params = params
        self._scheme = HeScheme(scheme)
        self._seed = seed
        self._bits = paillier_bits
        self._gen: Generator[Tasks, Tasks, None] | None = None
        self.outcome: BoostOutcome | None = None
        self.local: LocalParty | None = None
        self.hosts: list[str] = []

    # ------------------------------------------------------------------ handler
    def handle(self, data: bytes) -> bytes:
        rnd = -1
        try:
            task = Message.decode(data)
            rnd = task.round
            if task.kind is not TaskKind.SB_STEP:
                raise ProtocolError(f"the guest handles sb_step tasks, not {task.kind.value!r}")
            body, arrays = self._step(task)
        except FedsiloError as exc:
            fault = Fault(exc.code, f"guest {self.name!r}: {exc}")
        except Exception as exc:  # a party must answer, whatever broke
            log.exception("guest %s failed", self.name)
            text = f"guest {self.name!r}: {type(exc).__name__}: {exc}"
            fault = Fault(ErrorCode.INTERNAL, text)
        else:
            return Message(TaskKind.SB_STEP, JOB, rnd, self.name, body, arrays).encode()
        return Message(TaskKind.SB_STEP, JOB, rnd, self.name, fault=fault).encode()

    def _step(self, task: Message) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if task.body.get("start"):
            self.hosts = sorted(str(h) for h in task.body["hosts"])
            self._gen = self._protocol()
            tasks = next(self._gen)
        else:
            if self._gen is None:
                raise ProtocolError("sb_step before the start step")
            replies = {
                h: Message.decode(task.arrays[f"from_{h}"].tobytes())
                for h in self.hosts
                if f"from_{h}" in task.arrays
            }
            for h, msg in replies.items():
                if msg.error:
                    raise ProtocolError(f"host {h!r} failed: {msg.error}")
                if msg.sender != h:
                    raise ProtocolError(f"reply for {h!r} claims to be from {msg.sender!r}")
            try:
                tasks = self._gen.send(replies)
            except StopIteration:
                return {"done": True}, {}
        return {"done": False}, {f"to_{h}": blob(m.encode()) for h, m in tasks.items()}

    # ----------------------------------------------------------------- protocol
    def _msg(
        self, kind: TaskKind, rnd: int, body: dict[str, Any], arrays: dict[str, Any]
    ) -> Message:
        return Message(kind, JOB, rnd, self.name, body, arrays)

    def _protocol(self) -> Generator[Tasks, Tasks, None]:
        params, hosts = self._params, self.hosts
        config = (
            PaillierConfig(key_bits=self._bits)
            if self._scheme is HeScheme.PAILLIER
            else CkksConfig()
        )
        secret = generate(self._scheme, config)
        public = secret.public()
        train, valid = split_rows(len(self._y), params.validation_fraction, self._seed)
        self.local = local = LocalParty(self._x, train, params.n_bins, f"guest {self.name!r}")
        setup = {"scheme": self._scheme.value, "n_bins": params.n_bins}
        key = blob(public.to_bytes())
        replies = yield {
            h: self._msg(TaskKind.SB_SETUP, 0, setup, {"public_key": key, "train_rows": train})
            for h in hosts
        }
        n_feats = {h: int(replies[h].body["n_features"]) for h in hosts}
        gen = boost(self._y, train, valid, params)
        g = hh = np.zeros(0)
        tree = 0
        try:
            req = next(gen)
            while True:
                ans: Any = None
                if isinstance(req, NewTree):
                    g, hh, tree = req.g, req.h, req.index
                    arrays = {}
                    if self._scheme is HeScheme.PAILLIER:
                        arrays["gh"] = blob(crypto.paillier_encrypt_packed(public, g, hh))
                    yield {h: self._msg(TaskKind.SB_GRADIENTS, tree, {}, arrays) for h in hosts}
                elif isinstance(req, HistRequest):
                    arrays = {f"rows_{k}": rows for k, rows in enumerate(req.nodes)}
                    bodies: dict[str, dict[str, Any]] = {}
                    extra: dict[str, dict[str, Any]] = {}
                    widths: dict[str, list[int]] = {h: [] for h in hosts}
                    for h in hosts:
                        bodies[h], extra[h] = {"n_nodes": len(req.nodes)}, {}
                    if self._scheme is HeScheme.CKKS:
                        assert isinstance(public, CkksPublicContext)
                        for k, rows in enumerate(req.nodes):
                            cache: dict[int, Any] = {}
                            for h in hosts:
                                w = crypto.ckks_width(
                                    len(rows), n_feats[h], params.n_bins, public.slot_count
                                )
                                if w not in cache:
                                    cache[w] = blob(
                                        crypto.ckks_encrypt_node(public, g[rows], hh[rows], w)
                                    )
                                extra[h][f"gh_{k}"] = cache[w]
                                widths[h].append(w)
                        for h in hosts:
                            bodies[h]["widths"] = widths[h]
                    replies = yield {
                        h: self._msg(
                            TaskKind.SB_HISTOGRAMS, tree, bodies[h], {**arrays, **extra[h]}
                        )
                        for h in hosts
                    }
                    ans = []
                    for k, rows in enumerate(req.nodes):
                        per_party = [local.hist(g, hh, rows)]
                        for h in hosts:
                            data = replies[h].arrays[f"hist_{k}"].tobytes()
                            width = widths[h][k] if widths[h] else 0
                            per_party.append(
                                crypto.decode_bin_sums(
                                    secret, data, n_feats[h], params.n_bins, len(g), width
                                )
                            )
                        ans.append(per_party)
                elif isinstance(req, SplitRequest):
                    ans = yield from self._splits(req, tree)
                else:
                    ans = yield from self._route(req, tree)
                req = gen.send(ans)
        except StopIteration as stop:
            self.outcome = stop.value

    def _splits(self, req: SplitRequest, tree: int) -> Generator[Tasks, Tasks, list[Any]]:
        assert self.local is not None
        out: list[Any] = [None] * len(req.items)
        per_host: dict[str, list[int]] = {}
        for i, (party, rows, feat, b) in enumerate(req.items):
            if party == 0:
                out[i] = self.local.split(rows, feat, b)
            else:
                per_host.setdefault(self.hosts[party - 1], []).append(i)
        if per_host:
            tasks = {}
            for h, idx in per_host.items():
                specs = [{"feature": req.items[i][2], "bin": req.items[i][3]} for i in idx]
                arrays = {f"rows_{k}": req.items[i][1] for k, i in enumerate(idx)}
                tasks[h] = self._msg(TaskKind.SB_SPLIT, tree, {"splits": specs}, arrays)
            replies = yield tasks
            for h, idx in per_host.items():
                records = replies[h].body["records"]
                for k, i in enumerate(idx):
                    left = replies[h].arrays[f"left_{k}"].astype(bool)
                    if left.shape != req.items[i][1].shape:
                        raise ProtocolError(f"host {h!r}: split {k} partition has the wrong size")
                    out[i] = (int(records[k]), left)
        return out

    def _route(self, req: RouteQuery, tree: int) -> Generator[Tasks, Tasks, dict[int, Any]]:
        assert self.local is not None
        ans: dict[int, Any] = {}
        tasks = {}
        for party, (records, rows) in req.queries.items():
            if party == 0:
                ans[0] = self.local.route(records, rows)
            else:
                arrays = {"records": records, "rows": rows}
                tasks[self.hosts[party - 1]] = self._msg(TaskKind.SB_ROUTE, tree, {}, arrays)
        if tasks:
            replies = yield tasks
            for h, msg in replies.items():
                left = rows_of(msg.arrays, "left", 2).astype(bool)
                ans[self.hosts.index(h) + 1] = left
        return ans
