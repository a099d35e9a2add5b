"""The boosting loop and a plaintext party: the centralized reference runs the same code.

:func:`boost` is a generator over four requests -- :class:`NewTree`, and the tree grower's
:class:`~fedsilo.vertical.secureboost.tree.HistRequest` / ``SplitRequest`` -- plus
:class:`RouteQuery` for sending validation rows down the new tree. :func:`train_plain`
answers them in this process from every party's plaintext features (the centralized
reference, same bins, same arithmetic); the federated guest answers them through the hosts.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from fedsilo.errors import DataError
from fedsilo.vertical.secureboost.binning import Binning, check_features, fit_bins
from fedsilo.vertical.secureboost.tree import (
    BoolArray,
    FloatArray,
    HistRequest,
    IntArray,
    PartyHist,
    SplitRequest,
    Tree,
    TreeParams,
    grow_tree,
    logistic_grad_hess,
)


@dataclass(frozen=True)
class NewTree:
    """A tree starts: ``g``/``h`` of the training rows (train-position order)."""

    index: int
    g: FloatArray
    h: FloatArray


@dataclass(frozen=True)
class RouteQuery:
    """Per party: (record ids, global row ids) -> answered ``{party: left bits}``."""

    queries: dict[int, tuple[IntArray, IntArray]]


@dataclass
class BoostOutcome:
    trees: list[Tree]
    base_score: float
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_n_trees: int = 0


def log_loss(y: FloatArray, margin: FloatArray) -> float:
    p = np.clip(expit(margin), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def route(trees: list[Tree], rows: IntArray) -> Generator[RouteQuery, Any, list[IntArray]]:
    """Leaf node of every row in every tree, asking each split's owner for the branch."""
    pos = [np.zeros(len(rows), dtype=np.int64) for _ in trees]
    while True:
        queries: dict[int, tuple[list[IntArray], list[IntArray]]] = {}
        active: list[tuple[int, IntArray, int]] = []  # (tree, row positions, party)
        for t, tree in enumerate(trees):
            left = np.asarray(tree.left)[pos[t]]
            inner = np.flatnonzero(left >= 0)
            if inner.size == 0:
                continue
            parties = np.asarray(tree.party)[pos[t][inner]]
            for p in np.unique(parties).tolist():
                sel = inner[parties == p]
                recs, rws = queries.setdefault(p, ([], []))
                recs.append(np.asarray(tree.record)[pos[t][sel]])
                rws.append(rows[sel])
                active.append((t, sel, p))
        if not active:
            return pos
        asked = {p: (np.concatenate(r), np.concatenate(w)) for p, (r, w) in queries.items()}
        answer: dict[int, BoolArray] = yield RouteQuery(asked)
        offsets = dict.fromkeys(asked, 0)
        for t, sel, p in active:
            bits = answer[p][offsets[p] : offsets[p] + sel.size]
            offsets[p] += sel.size
            tree = trees[t]
            nodes = pos[t][sel]
            pos[t][sel] = np.where(
                bits, np.asarray(tree.left)[nodes], np.asarray(tree.right)[nodes]
            )


def boost(
    y: FloatArray, train: IntArray, valid: IntArray, params: TreeParams
) -> Generator[NewTree | HistRequest | SplitRequest | RouteQuery, Any, BoostOutcome]:
    """Logistic-loss gradient boosting over aligned rows ``train`` (early stopping on ``valid``)."""
    ytr = y[train]
    if not 0 < ytr.mean() < 1:
        raise DataError("SecureBoost needs both classes among the training rows")
    base = math.log(ytr.mean() / (1 - ytr.mean()))
    out = BoostOutcome([], base)
    margin = np.full(len(train), base)
    vmargin = np.full(len(valid), base)
    best, since_best = math.inf, 0
    positions = np.arange(len(train), dtype=np.int64)
    for t in range(params.n_trees):
        g, h = logistic_grad_hess(ytr, margin)
        yield NewTree(t, g, h)
        tree, leaves = yield from grow_tree(g, h, positions, params)
        out.trees.append(tree)
        for node, rows in leaves:
            margin[rows] += tree.weight[node]
        out.train_loss.append(log_loss(ytr, margin))
        if len(valid):
            (leaf,) = yield from route([tree], valid)
            vmargin += np.asarray(tree.weight)[leaf]
            loss = log_loss(y[valid], vmargin)
            out.valid_loss.append(loss)
            if loss < best - 1e-12:
                best, since_best, out.best_n_trees = loss, 0, t + 1
            else:
                since_best += 1
                if params.early_stopping_rounds and since_best >= params.early_stopping_rounds:
                    break
    if not len(valid) or not params.early_stopping_rounds:
        out.best_n_trees = len(out.trees)
    out.trees = out.trees[: out.best_n_trees]
    return out


class LocalParty:
    """One party's plaintext side: bins, histograms, split records, branch answers."""

    def __init__(self, x: npt.ArrayLike, train: IntArray, n_bins: int, what: str) -> None:
        self.x = check_features(x, what)
        self.binning: Binning = fit_bins(self.x[train], n_bins)
        self.codes = self.binning.codes(self.x[train])
        self.n_bins = n_bins
        self.table: list[tuple[int, float]] = []

    def hist(self, g: FloatArray, h: FloatArray, rows: IntArray) -> PartyHist:
        n_feat = self.codes.shape[1]
        flat = (self.codes[rows] + np.arange(n_feat) * self.n_bins).ravel()
        size = n_feat * self.n_bins
        gs = np.bincount(flat, np.repeat(g[rows], n_feat), minlength=size)
        hs = np.bincount(flat, np.repeat(h[rows], n_feat), minlength=size)
        return gs.reshape(n_feat, -1).astype(np.float64), hs.reshape(n_feat, -1).astype(np.float64)

    def split(self, rows: IntArray, feature: int, b: int) -> tuple[int, BoolArray]:
        self.table.append((feature, float(self.binning.thresholds[feature][b])))
        return len(self.table) - 1, self.codes[rows, feature] <= b

    def route(self, records: IntArray, rows: IntArray, x: FloatArray | None = None) -> BoolArray:
        data = self.x if x is None else x
        feats = np.array([f for f, _ in self.table], dtype=np.int64)
        thr = np.array([t for _, t in self.table])
        return np.asarray(data[rows, feats[records]] <= thr[records])


@dataclass
class PlainModel:
    outcome: BoostOutcome
    parties: list[LocalParty]

    def predict_margin(self, xs: list[FloatArray]) -> FloatArray:
        rows = np.arange(xs[0].shape[0], dtype=np.int64)
        gen = route(self.outcome.trees, rows)
        try:
            query = next(gen)
            while True:
                answer = {
                    p: self.parties[p].route(r, w, xs[p]) for p, (r, w) in query.queries.items()
                }
                query = gen.send(answer)
        except StopIteration as stop:
            leaves: list[IntArray] = stop.value
        margin = np.full(len(rows), self.outcome.base_score)
        for tree, leaf in zip(self.outcome.trees, leaves, strict=True):
            margin += np.asarray(tree.weight)[leaf]
        return margin

    def predict_proba(self, xs: list[FloatArray]) -> FloatArray:
        proba: FloatArray = expit(self.predict_margin(xs))
        return proba


def train_plain(
    xs: list[npt.ArrayLike], y: npt.ArrayLike, train: IntArray, valid: IntArray, params: TreeParams
) -> PlainModel:
    """Centralized reference: the same algorithm with every party's features in plaintext."""
    parties = [LocalParty(x, train, params.n_bins, f"party {i}") for i, x in enumerate(xs)]
    gen = boost(np.asarray(y, dtype=np.float64), train, valid, params)
    g = h = np.zeros(0)
    try:
        req = next(gen)
        while True:
            ans: Any
            if isinstance(req, NewTree):
                g, h, ans = req.g, req.h, None
            elif isinstance(req, HistRequest):
                ans = [[p.hist(g, h, rows) for p in parties] for rows in req.nodes]
            elif isinstance(req, SplitRequest):
                ans = [parties[p].split(rows, f, b) for p, rows, f, b in req.items]
            else:
                ans = {p: parties[p].route(r, w) for p, (r, w) in req.queries.items()}
            req = gen.send(ans)
    except StopIteration as stop:
        return PlainModel(stop.value, parties)


def split_rows(n: int, validation_fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """Seeded (train, validation) row indices, both sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = round(n * validation_fraction)
    return np.sort(order[n_valid:]).astype(np.int64), np.sort(order[:n_valid]).astype(np.int64)
