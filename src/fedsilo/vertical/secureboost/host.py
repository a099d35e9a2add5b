"""A SecureBoost host: bins its own features, sums encrypted gradients, owns its thresholds.

What a host receives (and nothing else): the public key, the training/validation row indices,
encrypted ``g``/``h`` (Paillier-packed per tree or CKKS per node), the row sets of tree nodes,
"split node rows at your feature f, bin b" requests and "which branch for (record, row)"
queries. What it sends: encrypted bin sums, split record ids with the left/right row partition,
and branch bits. Its thresholds live only in its split table (:meth:`export`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import NotReadyError, ProtocolError
from fedsilo.privacy.he import HeScheme, PublicContext, load_public
from fedsilo.privacy.he.paillier import PaillierVector
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
)
from fedsilo.vertical.secureboost import crypto
from fedsilo.vertical.secureboost.binning import Binning, check_features, fit_bins
from fedsilo.vertical.wire import blob, get_blob, get_positions

Arrays = dict[str, np.ndarray]


class SecureBoostHost:
    """Handles SB_* tasks for one host; ``features`` are its aligned rows (fit set)."""

    def __init__(self, name: str, features: npt.ArrayLike, *, split_table: Any = None) -> None:
        self.name = name
        self._x = check_features(features, f"host {name!r} features")
        self._public: PublicContext | None = None
        self._binning: Binning | None = None
        self._codes: npt.NDArray[np.int32] | None = None
        self._n_bins = 0
        self._packed: PaillierVector | None = None
        # split table: record id -> (feature index, threshold)
        self._table: list[tuple[int, float]] = [] if split_table is None else list(split_table)
        self.routes = self._route_table()
        """This host's route table: one function per ``SB_*`` task kind."""

    @property
    def split_table(self) -> list[tuple[int, float]]:
        """Record id -> (own feature index, threshold): this host's splits, in record order."""
        return list(self._table)

    def export(self) -> dict[str, Any]:
        """This host's model part (JSON): its split records, nothing about other parties."""
        return {
            "party": self.name,
            "records": [{"feature": f, "threshold": t} for f, t in self._table],
        }

    @classmethod
    def from_export(
        cls, name: str, model: dict[str, Any], features: npt.ArrayLike
    ) -> SecureBoostHost:
        table = [(int(r["feature"]), float(r["threshold"])) for r in model["records"]]
        return cls(name, features, split_table=table)

    def _route_table(self) -> dict[TaskKind, Callable[[Message], Message]]:
        return {
            TaskKind.SB_SETUP: self.setup,
            TaskKind.SB_GRADIENTS: self.gradients,
            TaskKind.SB_HISTOGRAMS: self.histograms,
            TaskKind.SB_SPLIT: self.split,
            TaskKind.SB_ROUTE: self.route,
        }

    def _reply(
        self, task: Message, body: Body | None = None, arrays: Arrays | None = None
    ) -> Message:
        content = {} if body is None else body.dump()
        return Message(task.kind, task.job_id, task.round, self.name, content, arrays or {})

    def _ready(self, task: Message) -> tuple[PublicContext, npt.NDArray[np.int32]]:
        if self._public is None or self._codes is None:
            raise NotReadyError(f"host {self.name!r}: {task.kind.value} before sb_setup")
        return self._public, self._codes

    def setup(self, task: Message) -> Message:
        body = SbSetup.of(task)
        self._public = load_public(body.scheme, get_blob(task, "public_key", self.name))
        train = get_positions(task, "train_rows", self._x.shape[0], self.name)
        self._n_bins = body.n_bins
        self._binning = fit_bins(self._x[train], self._n_bins)
        self._codes = self._binning.codes(self._x[train])
        self._table = []
        return self._reply(task, SbSetupDone(n_features=int(self._x.shape[1])))

    def gradients(self, task: Message) -> Message:
        Empty.of(task)
        public, codes = self._ready(task)
        self._packed = None
        if "gh" in task.arrays:
            vec = public.deserialize_vector(get_blob(task, "gh", self.name))
            if not isinstance(vec, PaillierVector) or len(vec) != codes.shape[0]:
                raise ProtocolError(
                    f"host {self.name!r}: packed gradients must hold one ciphertext per train row"
                )
            self._packed = vec
        return self._reply(task)

    def histograms(self, task: Message) -> Message:
        body = SbHistograms.of(task)
        public, codes = self._ready(task)
        widths = body.widths or []
        if public.scheme is HeScheme.CKKS and len(widths) != body.n_nodes:
            raise ProtocolError(f"host {self.name!r}: sb_histograms needs one width per node")
        out: Arrays = {}
        for k in range(body.n_nodes):
            rows = get_positions(task, f"rows_{k}", codes.shape[0], self.name, allow_empty=True)
            if public.scheme is HeScheme.PAILLIER:
                if self._packed is None:
                    raise NotReadyError(
                        f"host {self.name!r}: histograms requested before the tree's gradients"
                    )
                res = crypto.paillier_bin_sums(public, self._packed, codes, rows, self._n_bins)
            else:
                gh = get_blob(task, f"gh_{k}", self.name)
                res = crypto.ckks_bin_sums(public, gh, widths[k], codes, rows, self._n_bins)
            out[f"hist_{k}"] = blob(res)
        return self._reply(task, arrays=out)

    def split(self, task: Message) -> Message:
        body = SbSplit.of(task)
        _, codes = self._ready(task)
        assert self._binning is not None
        records: list[int] = []
        out: Arrays = {}
        for k, spec in enumerate(body.splits):
            feat, b = spec.feature, spec.bin
            if feat >= self._binning.n_features or b >= self._binning.n_bins(feat) - 1:
                raise ProtocolError(
                    f"host {self.name!r}: split {k}: no feature {feat} / bin {b} to split at"
                )
            rows = get_positions(task, f"rows_{k}", codes.shape[0], self.name, allow_empty=True)
            self._table.append((feat, float(self._binning.thresholds[feat][b])))
            records.append(len(self._table) - 1)
            out[f"left_{k}"] = (codes[rows, feat] <= b).astype(np.uint8)
        return self._reply(task, SbSplitDone(records=records), out)

    def route(self, task: Message) -> Message:
        """Which branch each (record, row) takes, over the rows this host was built with."""
        SbRoute.of(task)
        records = get_positions(task, "records", len(self._table) or 1, self.name, allow_empty=True)
        rows = get_positions(task, "rows", self._x.shape[0], self.name, allow_empty=True)
        if records.shape != rows.shape:
            raise ProtocolError("route queries need as many records as rows")
        if not self._table:
            if records.size:
                raise ProtocolError("this host has no split records")
            return self._reply(task, arrays={"left": np.zeros(0, dtype=np.uint8)})
        feats = np.array([f for f, _ in self._table], dtype=np.int64)
        thr = np.array([t for _, t in self._table])
        left = self._x[rows, feats[records]] <= thr[records]
        return self._reply(task, arrays={"left": left.astype(np.uint8)})
