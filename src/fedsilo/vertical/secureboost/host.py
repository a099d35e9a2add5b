"""A SecureBoost host: bins its own features, sums encrypted gradients, owns its thresholds.

What a host receives (and nothing else): the public key, the training/validation row indices,
encrypted ``g``/``h`` (Paillier-packed per tree or CKKS per node), the row sets of tree nodes,
"split node rows at your feature f, bin b" requests and "which branch for (record, row)"
queries. What it sends: encrypted bin sums, split record ids with the left/right row partition,
and branch bits. Its thresholds live only in its split table (:meth:`export`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ErrorCode, FedsiloError, ProtocolError
from fedsilo.privacy.he import HeScheme, PublicContext, load_public
from fedsilo.privacy.he.paillier import PaillierVector
from fedsilo.protocol.messages import Fault, Message, TaskKind
from fedsilo.vertical.secureboost import crypto
from fedsilo.vertical.secureboost.binning import Binning, check_features, fit_bins

log = logging.getLogger(__name__)
Arrays = dict[str, np.ndarray]


def blob(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def rows_of(arrays: Arrays, key: str, n: int) -> npt.NDArray[np.int64]:
    if key not in arrays:
        raise ProtocolError(f"task is missing array {key!r}")
    rows = np.asarray(arrays[key])
    if rows.dtype.kind not in "iu" or rows.ndim != 1:
        raise ProtocolError(f"array {key!r} must be a 1-D integer row index")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ProtocolError(f"array {key!r} has row indices outside 0..{n - 1}")
    return rows


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

    def handle(self, data: bytes) -> bytes:
        try:
            task = Message.decode(data)
        except ProtocolError as exc:
            return Message(TaskKind.SB_STEP, "", -1, self.name, fault=Fault.of(exc)).encode()
        try:
            body, arrays = self._dispatch(task)
        except FedsiloError as exc:
            fault = Fault(exc.code, f"host {self.name!r}: {exc}")
        except Exception as exc:  # a party must answer, whatever broke
            log.exception("host %s failed on %s", self.name, task.kind.value)
            fault = Fault(ErrorCode.INTERNAL, f"host {self.name!r}: {type(exc).__name__}: {exc}")
        else:
            return Message(task.kind, task.job_id, task.round, self.name, body, arrays).encode()
        return Message(task.kind, task.job_id, task.round, self.name, fault=fault).encode()

    def _dispatch(self, task: Message) -> tuple[dict[str, Any], Arrays]:
        kind = task.kind
        if kind is TaskKind.SB_SETUP:
            return self._setup(task)
        if kind is TaskKind.SB_ROUTE:
            return self._route(task)
        if self._public is None or self._codes is None:
            raise ProtocolError(f"{kind.value} before sb_setup")
        if kind is TaskKind.SB_GRADIENTS:
            self._packed = None
            if "gh" in task.arrays:
                vec = self._public.deserialize_vector(task.arrays["gh"].tobytes())
                if not isinstance(vec, PaillierVector) or len(vec) != self._codes.shape[0]:
                    raise ProtocolError("packed gradients must hold one ciphertext per train row")
                self._packed = vec
            return {}, {}
        if kind is TaskKind.SB_HISTOGRAMS:
            return self._histograms(task)
        if kind is TaskKind.SB_SPLIT:
            return self._split(task)
        raise ProtocolError(f"a SecureBoost host does not handle {kind.value!r} tasks")

    def _setup(self, task: Message) -> tuple[dict[str, Any], Arrays]:
        scheme = HeScheme(str(task.body["scheme"]))
        self._public = load_public(scheme, task.arrays["public_key"].tobytes())
        train = rows_of(task.arrays, "train_rows", self._x.shape[0])
        self._n_bins = int(task.body["n_bins"])
        self._binning = fit_bins(self._x[train], self._n_bins)
        self._codes = self._binning.codes(self._x[train])
        self._table = []
        return {"n_features": int(self._x.shape[1])}, {}

    def _histograms(self, task: Message) -> tuple[dict[str, Any], Arrays]:
        assert self._public is not None and self._codes is not None
        n_nodes = int(task.body["n_nodes"])
        out: Arrays = {}
        for k in range(n_nodes):
            rows = rows_of(task.arrays, f"rows_{k}", self._codes.shape[0])
            if self._public.scheme is HeScheme.PAILLIER:
                if self._packed is None:
                    raise ProtocolError("histograms requested before the tree's gradients")
                res = crypto.paillier_bin_sums(
                    self._public, self._packed, self._codes, rows, self._n_bins
                )
            else:
                if f"gh_{k}" not in task.arrays:
                    raise ProtocolError(f"histogram task is missing the gradients of node {k}")
                res = crypto.ckks_bin_sums(
                    self._public,
                    task.arrays[f"gh_{k}"].tobytes(),
                    int(task.body["widths"][k]),
                    self._codes,
                    rows,
                    self._n_bins,
                )
            out[f"hist_{k}"] = blob(res)
        return {}, out

    def _split(self, task: Message) -> tuple[dict[str, Any], Arrays]:
        assert self._binning is not None and self._codes is not None
        records: list[int] = []
        out: Arrays = {}
        for k, spec in enumerate(task.body["splits"]):
            feat, b = int(spec["feature"]), int(spec["bin"])
            if (
                not 0 <= feat < self._binning.n_features
                or not 0 <= b < self._binning.n_bins(feat) - 1
            ):
                raise ProtocolError(f"split {k}: no feature {feat} / bin {b} to split at")
            rows = rows_of(task.arrays, f"rows_{k}", self._codes.shape[0])
            self._table.append((feat, float(self._binning.thresholds[feat][b])))
            records.append(len(self._table) - 1)
            out[f"left_{k}"] = (self._codes[rows, feat] <= b).astype(np.uint8)
        return {"records": records}, out

    def _route(self, task: Message) -> tuple[dict[str, Any], Arrays]:
        records = rows_of(task.arrays, "records", len(self._table) or 1)
        rows = rows_of(task.arrays, "rows", self._x.shape[0])
        if records.shape != rows.shape:
            raise ProtocolError("route queries need as many records as rows")
        if not self._table:
            if records.size:
                raise ProtocolError("this host has no split records")
            return {}, {"left": np.zeros(0, dtype=np.uint8)}
        feats = np.array([f for f, _ in self._table], dtype=np.int64)
        thr = np.array([t for _, t in self._table])
        left = self._x[rows, feats[records]] <= thr[records]
        return {}, {"left": left.astype(np.uint8)}
