"""The SecureBoost guest (label holder): gradients, key, split choice, tree structure.

The guest's protocol is straight-line code in a generator (:meth:`SecureBoostGuest._protocol`)
that yields the tasks it wants delivered to hosts and receives their replies. Its ``SB_STEP``
route (:meth:`SecureBoostGuest.step`) advances it one step per relay
(:mod:`fedsilo.vertical.secureboost.relay`): the coordinator turns each packed host task into
a message for that host and packs the replies back, in process and over gRPC alike.

What the guest receives from hosts: their feature counts, encrypted bin sums (decrypted here),
split record ids with the left/right partition of a node's rows, and branch bits. Never a host
feature value or threshold.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError, ProtocolError
from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig, generate
from fedsilo.privacy.he.ckks import CkksPublicContext
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.vertical.bodies import (
    Body,
    Empty,
    SbHistograms,
    SbRoute,
    SbSetup,
    SbSetupDone,
    SbSplit,
    SbSplitDone,
    SbStep,
    SbStepReply,
    SplitSpec,
)
from fedsilo.vertical.secureboost import crypto
from fedsilo.vertical.secureboost.boost import (
    BoostOutcome,
    LocalParty,
    NewTree,
    RouteQuery,
    boost,
    split_rows,
)
from fedsilo.vertical.secureboost.relay import GuestSteps
from fedsilo.vertical.secureboost.tree import HistRequest, SplitRequest, TreeParams
from fedsilo.vertical.wire import blob, get_bits, get_blob

Tasks = dict[str, Message]


class SecureBoostGuest:
    """The guest side of training; :meth:`step` is its ``SB_STEP`` route."""

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
        self._steps = GuestSteps(name)
        self._job = ""
        self.outcome: BoostOutcome | None = None
        self.local: LocalParty | None = None
        self.hosts: list[str] = []
        self.routes = {TaskKind.SB_STEP: self.step}
        """The guest's route table: its one task kind."""

    # ------------------------------------------------------------------ the SB_STEP route
    def step(self, task: Message) -> Message:
        """Advance the protocol by one relay: start it, or feed it the hosts' replies."""
        body = SbStep.of(task)
        if body.start:
            self.hosts = sorted(body.hosts)
            self._job = task.job_id
        return self._steps.step(task, body, self._protocol)

    # ----------------------------------------------------------------- protocol
    def _msg(self, kind: TaskKind, rnd: int, body: Body, arrays: dict[str, Any]) -> Message:
        return Message(kind, self._job, rnd, self.name, body.dump(), arrays)

    def _protocol(self) -> Generator[Tasks, Tasks, SbStepReply | None]:
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
        setup = SbSetup(scheme=self._scheme, n_bins=params.n_bins)
        key = blob(public.to_bytes())
        replies = yield {
            h: self._msg(TaskKind.SB_SETUP, 0, setup, {"public_key": key, "train_rows": train})
            for h in hosts
        }
        n_feats = {h: SbSetupDone.of(replies[h]).n_features for h in hosts}
        gen = boost(self._y, train, valid, params)
        g = hh = np.zeros(0)
        tree = 0
        try:
            req = next(gen)
            while True:
                ans: Any = None
                if isinstance(req, NewTree):
                    g, hh, tree = req.g, req.h, req.index
                    arrays: dict[str, np.ndarray] = {}
                    if self._scheme is HeScheme.PAILLIER:
                        arrays["gh"] = blob(crypto.paillier_encrypt_packed(public, g, hh))
                    yield {
                        h: self._msg(TaskKind.SB_GRADIENTS, tree, Empty(), arrays) for h in hosts
                    }
                elif isinstance(req, HistRequest):
                    arrays = {f"rows_{k}": rows for k, rows in enumerate(req.nodes)}
                    bodies: dict[str, SbHistograms] = {}
                    extra: dict[str, dict[str, Any]] = {}
                    widths: dict[str, list[int]] = {h: [] for h in hosts}
                    for h in hosts:
                        extra[h] = {}
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
                        widths_h = widths[h] if self._scheme is HeScheme.CKKS else None
                        bodies[h] = SbHistograms(n_nodes=len(req.nodes), widths=widths_h)
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
                            data = get_blob(replies[h], f"hist_{k}", f"guest {self.name!r}")
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
        return None

    def _splits(self, req: SplitRequest, tree: int) -> Generator[Tasks, Tasks, list[Any]]:
        assert self.local is not None
        out: list[Any] = [None] * len(req.items)
        who = f"guest {self.name!r}"
        per_host: dict[str, list[int]] = {}
        for i, (party, rows, feat, b) in enumerate(req.items):
            if party == 0:
                out[i] = self.local.split(rows, feat, b)
            else:
                per_host.setdefault(self.hosts[party - 1], []).append(i)
        if per_host:
            tasks = {}
            for h, idx in per_host.items():
                specs = [SplitSpec(feature=req.items[i][2], bin=req.items[i][3]) for i in idx]
                arrays = {f"rows_{k}": req.items[i][1] for k, i in enumerate(idx)}
                tasks[h] = self._msg(TaskKind.SB_SPLIT, tree, SbSplit(splits=specs), arrays)
            replies = yield tasks
            for h, idx in per_host.items():
                records = SbSplitDone.of(replies[h]).records
                if len(records) != len(idx):
                    raise ProtocolError(
                        f"sb_split reply from {h!r}: field 'records': {len(records)} records "
                        f"for {len(idx)} splits"
                    )
                for k, i in enumerate(idx):
                    left = get_bits(replies[h], f"left_{k}", len(req.items[i][1]), who)
                    out[i] = (records[k], left)
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
                tasks[self.hosts[party - 1]] = self._msg(TaskKind.SB_ROUTE, tree, SbRoute(), arrays)
        if tasks:
            replies = yield tasks
            for h, msg in replies.items():
                size = len(tasks[h].arrays["rows"])
                ans[self.hosts.index(h) + 1] = get_bits(msg, "left", size, f"guest {self.name!r}")
        return ans

    def model(self) -> dict[str, Any]:
        """The guest's model part: its trees and its own split table (no host threshold)."""
        if self.outcome is None or self.local is None:
            raise ProtocolError(f"guest {self.name!r} finished without a model")
        return {
            "scheme": self._scheme.value,
            "params": self._params.__dict__,
            "base_score": self.outcome.base_score,
            "hosts": self.hosts,
            "trees": [t.to_json() for t in self.outcome.trees],
            "records": [{"feature": f, "threshold": t} for f, t in self.local.table],
        }
