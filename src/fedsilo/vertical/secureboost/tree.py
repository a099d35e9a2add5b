"""The tree grower shared by the centralized reference and the federated guest.

:func:`grow_tree` is a generator: it *asks* for histograms and splits (:class:`HistRequest`,
:class:`SplitRequest`) and the caller answers, either from plaintext data in this process
(:mod:`~fedsilo.vertical.secureboost.plain`) or through hosts and encrypted gradients
(:mod:`~fedsilo.vertical.secureboost.guest`). Both paths run this one function, so with the same
bins and the same histogram sums they grow the same tree.

Growth is level-wise. For each pair of siblings only the child with fewer rows gets a
histogram; the other is ``parent - sibling`` (computed by the guest after decryption, so the
hosts do half the encrypted work).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from fedsilo.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# per party: (G, H), each of shape (features, bins)
PartyHist = tuple[FloatArray, FloatArray]

MIN_GAIN = 1e-9  # CKKS sums carry ~1e-7 noise; a "gain" below this is no gain
TIE_TOLERANCE = 1e-6  # relative: gains this close count as equal


@dataclass(frozen=True)
class TreeParams:
    """Boosting parameters (XGBoost/SecureBoost naming)."""

    n_trees: int = 10
    max_depth: int = 3
    learning_rate: float = 0.3
    n_bins: int = 32
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 0.1
    early_stopping_rounds: int = 0  # 0: off
    validation_fraction: float = 0.0  # share of training rows held out for early stopping

    def __post_init__(self) -> None:
        checks = [
            (self.n_trees >= 1, "n_trees must be >= 1"),
            (1 <= self.max_depth <= 16, "max_depth must be between 1 and 16"),
            (0 < self.learning_rate <= 1, "learning_rate must be in (0, 1]"),
            (2 <= self.n_bins <= 256, "n_bins must be between 2 and 256"),
            (self.reg_lambda >= 0, "reg_lambda must be >= 0"),
            (self.gamma >= 0, "gamma must be >= 0"),
            (self.min_child_weight > 0, "min_child_weight must be > 0 (it also guards empty bins)"),
            (self.early_stopping_rounds >= 0, "early_stopping_rounds must be >= 0"),
            (0 <= self.validation_fraction < 0.5, "validation_fraction must be in [0, 0.5)"),
        ]
        for ok, text in checks:
            if not ok:
                raise ConfigError(f"SecureBoost parameters: {text}")
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ConfigError(
                "SecureBoost parameters: early_stopping_rounds needs validation_fraction > 0"
            )


@dataclass(frozen=True)
class HistRequest:
    """Histograms of these nodes (row-index arrays), answered as ``[node][party] -> (G, H)``."""

    nodes: list[IntArray]


@dataclass(frozen=True)
class SplitRequest:
    """Apply splits ``(party, rows, feature, bin)``; answered as ``[(record_id, left_mask)]``."""

    items: list[tuple[int, IntArray, int, int]]


Request = HistRequest | SplitRequest


@dataclass
class Tree:
    """A tree as the guest knows it: which party splits where, and the leaf weights.

    ``record`` is the owner's split-table id; ``feature``/``bin`` are the owner's feature index
    and bin index (what the guest chose from the histograms; never a threshold).
    """

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    party: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    record: list[int] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)
    gain: list[float] = field(default_factory=list)  # each split's gain (0 at leaves)

    def add_leaf(self, weight: float) -> int:
        for col, value in (
            (self.left, -1),
            (self.right, -1),
            (self.party, -1),
            (self.feature, -1),
            (self.bin, -1),
            (self.record, -1),
        ):
            col.append(value)
        self.weight.append(weight)
        self.gain.append(0.0)
        return len(self.weight) - 1

    def to_json(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, list[Any]]) -> Tree:
        return cls(
            left=[int(v) for v in data["left"]],
            right=[int(v) for v in data["right"]],
            party=[int(v) for v in data["party"]],
            feature=[int(v) for v in data["feature"]],
            bin=[int(v) for v in data["bin"]],
            record=[int(v) for v in data["record"]],
            weight=[float(v) for v in data["weight"]],
            gain=[float(v) for v in data.get("gain", [0.0] * len(data["weight"]))],
        )

    def structure(self) -> list[tuple[int, int, int]]:
        """(party, feature, bin) of every node in creation order (-1s for leaves)."""
        return list(zip(self.party, self.feature, self.bin, strict=True))


def logistic_grad_hess(y: FloatArray, margin: FloatArray) -> tuple[FloatArray, FloatArray]:
    p = expit(margin)
    return p - y, p * (1.0 - p)


def best_split(
    hists: list[PartyHist], g_total: float, h_total: float, params: TreeParams
) -> tuple[float, int, int, int]:
    """(gain, party, feature, bin) of the best split, or gain 0 and -1s when none helps."""
    lam = params.reg_lambda
    parent = g_total * g_total / (h_total + lam)
    gains: list[FloatArray] = []
    for g_hist, h_hist in hists:
        gl = np.cumsum(g_hist, axis=1)[:, :-1]
        hl = np.cumsum(h_hist, axis=1)[:, :-1]
        gr = g_total - gl
        hr = h_total - hl
        gain = 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - parent) - params.gamma
        ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
        gains.append(np.where(ok, gain, -np.inf))
    top = max((float(g.max()) for g in gains if g.size), default=-np.inf)
    if not top > MIN_GAIN:
        return (0.0, -1, -1, -1)
    # Near-ties (two features cutting a node the same way) go to the first candidate in
    # (party, feature, bin) order, so fixed-point or CKKS rounding cannot flip them.
    floor = top - TIE_TOLERANCE * max(1.0, abs(top))
    for party, gain in enumerate(gains):
        hits = np.flatnonzero(gain.ravel() >= floor)
        if hits.size:
            f, b = divmod(int(hits[0]), gain.shape[1])
            return (float(gain[f, b]), party, f, b)
    return (0.0, -1, -1, -1)


@dataclass(eq=False)
class _Open:
    node: int
    rows: IntArray
    hist: list[PartyHist] | None = None
    parent_hist: list[PartyHist] | None = None  # set on the larger child of a split
    sibling: _Open | None = None


def grow_tree(
    g: FloatArray, h: FloatArray, rows: IntArray, params: TreeParams
) -> Generator[Request, Any, tuple[Tree, list[tuple[int, IntArray]]]]:
    """Grow one tree on ``rows``; return it and ``(leaf node, rows)`` for every leaf."""
    tree = Tree()
    leaves: list[tuple[int, IntArray]] = []
    level = [_Open(tree.add_leaf(0.0), rows)]
    lam, lr = params.reg_lambda, params.learning_rate
    for depth in range(params.max_depth + 1):
        splittable = {
            id(o): depth < params.max_depth
            and len(o.rows) >= 2
            and float(h[o.rows].sum()) >= 2 * params.min_child_weight
            for o in level
        }
        direct: list[_Open] = []
        derived: list[_Open] = []
        for o in level:
            if not splittable[id(o)]:
                continue
            if o.parent_hist is not None and o.sibling is not None and splittable[id(o.sibling)]:
                derived.append(o)  # parent - sibling, the sibling is computed directly
            else:
                direct.append(o)
        if direct:
            answer: list[list[PartyHist]] = yield HistRequest([o.rows for o in direct])
            for o, hist in zip(direct, answer, strict=True):
                o.hist = hist
        for o in derived:
            assert o.parent_hist is not None and o.sibling is not None
            assert o.sibling.hist is not None
            o.hist = [
                (pg - sg, ph - sh)
                for (pg, ph), (sg, sh) in zip(o.parent_hist, o.sibling.hist, strict=True)
            ]
        chosen: list[tuple[_Open, tuple[float, int, int, int]]] = []
        for o in level:
            g_sum, h_sum = float(g[o.rows].sum()), float(h[o.rows].sum())
            split = (0.0, -1, -1, -1)
            if splittable[id(o)] and o.hist is not None:
                split = best_split(o.hist, g_sum, h_sum, params)
            if split[1] < 0:
                tree.weight[o.node] = -lr * g_sum / (h_sum + lam)
                leaves.append((o.node, o.rows))
            else:
                chosen.append((o, split))
        if not chosen:
            break
        results: list[tuple[int, BoolArray]] = yield SplitRequest(
            [(s[1], o.rows, s[2], s[3]) for o, s in chosen]
        )
        nxt: list[_Open] = []
        for (o, (gain, party, feat, b)), (record, left_mask) in zip(chosen, results, strict=True):
            lnode, rnode = tree.add_leaf(0.0), tree.add_leaf(0.0)
            tree.left[o.node], tree.right[o.node] = lnode, rnode
            tree.gain[o.node] = gain
            tree.party[o.node], tree.feature[o.node] = party, feat
            tree.bin[o.node], tree.record[o.node] = b, record
            left = _Open(lnode, o.rows[left_mask])
            right = _Open(rnode, o.rows[~left_mask])
            small, large = (left, right) if len(left.rows) <= len(right.rows) else (right, left)
            large.parent_hist, large.sibling = o.hist, small
            nxt.extend([left, right])
        level = nxt
    return tree, leaves
