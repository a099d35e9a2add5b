"""The coordinator's side of a whole vertical job, over any Transport.

:class:`VerticalRunner` is what ``fedsilo simulate`` (``InProcessTransport`` over one
:class:`~fedsilo.vertical.agent.VerticalPartyAgent` per party) and the deployed server
(``GrpcTransport`` over party processes) both run:

1. **PSI relay** (``PSI_OPEN`` -> ``PSI_REQUEST`` (guest) -> ``PSI_SETUP`` (hosts) ->
   ``PSI_INTERSECT`` (guest) -> ``PSI_FINISH`` (hosts)). The coordinator forwards blinded
   points and sealed bytes; it learns each party's row count, the guest's set size and the
   aligned count, never an ID. It then draws the held-out positions from the job seed
   (``derive_seed(seed, "vertical/test_split")``), as the in-process alignment does.
2. **Training**: hetero LR with the coordinator as arbiter
   (:class:`~fedsilo.vertical.hetero_lr.HeteroLrArbiter`, HE key held here), or SecureBoost
   with the coordinator as a keyless relay (:func:`~fedsilo.vertical.secureboost.relay`).
3. **Held-out metrics**: computed by the guest (the label holder) and reported.
4. ``VERTICAL_SAVE``: every party keeps its own model part; the reply says where (in a
   deployment: a path at the party and the file's SHA-256).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import SecretContext, generate
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.transport import Transport
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig
from fedsilo.vertical.hetero_lr import HeteroLrArbiter
from fedsilo.vertical.hetero_lr.wire import blob, get_blob
from fedsilo.vertical.secureboost import relay

EpochCallback = Callable[[int, float, float], None]
TreeCallback = Callable[[int, float], None]
StepCallback = Callable[[str, int, int], None]
"""``on_psi_step(step, done, total)``: after each of the relayed PSI steps (``PSI_STEPS``)."""

PSI_STEPS = ("psi_open", "psi_request", "psi_setup", "psi_intersect", "psi_finish")
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Alignment:
    """What the coordinator knows after PSI: counts and the shared split (positions only)."""

    aligned: int
    train: IntArray
    test: IntArray
    local_rows: dict[str, int]
    guest: str

    def report(self) -> dict[str, Any]:
        parties = {
            name: {
                "role": "client" if name == self.guest else "server",
                "num_rows": rows,
                "num_aligned": self.aligned,
                "fraction_aligned": self.aligned / rows if rows else 0.0,
            }
            for name, rows in self.local_rows.items()
        }
        return {
            "aligned": self.aligned,
            "train": len(self.train),
            "test": len(self.test),
            "local_rows": dict(self.local_rows),
            "reveal": "both",
            "parties": parties,
        }


@dataclass
class VerticalOutcome:
    """A finished vertical job as the coordinator sees it (metrics, never model parts)."""

    alignment: Alignment
    test: dict[str, float]
    train: dict[str, float] | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    converged: bool | None = None
    n_trees: int | None = None
    model_parts: dict[str, dict[str, Any]] = field(default_factory=dict)


def heldout_split(seed: int, aligned: int, test_fraction: float) -> tuple[IntArray, IntArray]:
    """Sorted (train, held-out) positions of the aligned rows, from the job seed."""
    rng = np.random.default_rng(derive_seed(seed, "vertical/test_split"))
    perm = rng.permutation(aligned)
    n_test = max(1, round(test_fraction * aligned))
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


def _metrics(value: object, what: str) -> dict[str, float]:
    if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
        raise ProtocolError(f"the guest returned no (or malformed) {what} metrics")
    return {str(k): float(v) for k, v in value.items()}


def _floats(value: object, what: str) -> list[float]:
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise ProtocolError(f"the guest returned a malformed {what}")
    return [float(v) for v in value]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class VerticalRunner:
    """Runs one vertical job (PSI, training, held-out metrics, saving) over ``transport``."""

    def __init__(
        self,
        job: VerticalJobConfig,
        transport: Transport,
        *,
        job_id: str | None = None,
        timeout_s: float = 3600.0,
        secret: SecretContext | None = None,
        on_epoch: EpochCallback | None = None,
        on_tree: TreeCallback | None = None,
        on_psi_step: StepCallback | None = None,
    ) -> None:
        self.job = job
        self.job_id = job_id or job.name
        self._transport = transport
        self._timeout_s = timeout_s
        self._secret = secret
        self._on_epoch = on_epoch
        self._on_tree = on_tree
        self._on_psi_step = on_psi_step
        self.guest = job.guest.name
        self.hosts = [h.name for h in job.hosts]

    # ------------------------------------------------------------------ plumbing

    def _exchange(self, step: str, tasks: Mapping[str, Message]) -> dict[str, Message]:
        gathered = self._transport.exchange(tasks, timeout_s=self._timeout_s)
        replies = gathered.require_all(f"vertical job {self.job.name!r}, {step}")
        if self._on_psi_step is not None and step in PSI_STEPS:
            self._on_psi_step(step, PSI_STEPS.index(step) + 1, len(PSI_STEPS))
        return replies

    def _task(
        self,
        kind: TaskKind,
        body: Mapping[str, Any] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> Message:
        return Message(kind, self.job_id, 0, "coordinator", dict(body or {}), dict(arrays or {}))

    # ------------------------------------------------------------------ PSI

    def align(self) -> Alignment:
        """PSI between the guest (client) and every host (server), relayed; the shared split."""
        job, guest, hosts = self.job, self.guest, self.hosts
        common = {
            "guest": guest,
            "hosts": hosts,
            "seed": job.seed,
            "psi": {"fpr": job.psi.fpr, "batch_size": job.psi.batch_size},
        }
        opened = self._exchange(
            "psi_open",
            {
                p.name: self._task(
                    TaskKind.PSI_OPEN,
                    {
                        **common,
                        "party": {
                            "id_column": p.id_column,
                            "label": p.label,
                            "features": p.features,
                        },
                    },
                )
                for p in job.parties
            },
        )
        rows = {}
        for name, reply in opened.items():
            count = reply.body.get("rows")
            if isinstance(count, bool) or not isinstance(count, int):
                raise ProtocolError(f"party {name!r} did not report its row count")
            rows[name] = count
        keys = {p: get_blob(opened[p], "channel_key", p) for p in opened}
        request = self._exchange(
            "psi_request",
            {
                guest: self._task(
                    TaskKind.PSI_REQUEST, arrays={f"key:{h}": blob(keys[h]) for h in hosts}
                )
            },
        )[guest]
        elements = request.body.get("elements")
        served = self._exchange(
            "psi_setup",
            {
                h: self._task(
                    TaskKind.PSI_SETUP,
                    {"client_elements": elements},
                    {
                        f"key:{guest}": blob(keys[guest]),
                        "request": blob(get_blob(request, f"request:{h}", guest)),
                    },
                )
                for h in hosts
            },
        )
        relayed: dict[str, np.ndarray] = {}
        for h in hosts:
            relayed[f"setup:{h}"] = blob(get_blob(served[h], "setup", h))
            relayed[f"response:{h}"] = blob(get_blob(served[h], "response", h))
        intersected = self._exchange(
            "psi_intersect", {guest: self._task(TaskKind.PSI_INTERSECT, arrays=relayed)}
        )[guest]
        finished = self._exchange(
            "psi_finish",
            {
                h: self._task(
                    TaskKind.PSI_FINISH,
                    arrays={
                        f"from:{guest}": blob(get_blob(intersected, f"to:{h}", guest)),
                        f"keep:{guest}": blob(get_blob(intersected, f"keep:{h}", guest)),
                    },
                )
                for h in hosts
            },
        )
        counts = {guest: intersected.body.get("aligned")}
        counts.update({h: finished[h].body.get("aligned") for h in hosts})
        aligned = counts[guest]
        if len(set(counts.values())) != 1 or not isinstance(aligned, int):
            raise ProtocolError(f"parties disagree on the number of aligned customers: {counts}")
        train, test = heldout_split(job.seed, aligned, job.test_fraction)
        ordered = {p.name: rows[p.name] for p in job.parties}
        return Alignment(aligned, train, test, ordered, guest)

    # ------------------------------------------------------------------ the job

    def run(self) -> VerticalOutcome:
        alignment = self.align()
        if self.job.algorithm is VerticalAlgorithm.HETERO_LR:
            outcome = self._hetero_lr(alignment)
        else:
            outcome = self._secureboost(alignment)
        saved = self._exchange(
            "save",
            {p: self._task(TaskKind.VERTICAL_SAVE) for p in [self.guest, *self.hosts]},
        )
        outcome.model_parts = {p: dict(r.body) for p, r in sorted(saved.items())}
        return outcome

    def _hetero_lr(self, alignment: Alignment) -> VerticalOutcome:
        job = self.job
        secret = self._secret or generate(job.he.scheme, job.he.backend_config())
        arbiter = HeteroLrArbiter(
            self.job_id,
            self._transport,
            secret,
            guest=self.guest,
            hosts=self.hosts,
            params=job.hetero_lr.params(),
            seed=job.seed,
            on_epoch=self._on_epoch,
        )
        arbiter.setup(alignment.train, alignment.test)
        trained = arbiter.train()
        return VerticalOutcome(
            alignment,
            arbiter.predict(),
            history={"loss_per_epoch": trained.losses, "seconds_per_epoch": trained.epoch_seconds},
            converged=trained.converged,
        )

    def _secureboost(self, alignment: Alignment) -> VerticalOutcome:
        job = self.job
        params = job.secureboost.params()
        body = {
            "algorithm": "secureboost",
            "scheme": job.he.scheme.value,
            "params": dict(params.__dict__),
            "seed": derive_seed(job.seed, "secureboost/validation"),
            "paillier_bits": job.he.key_bits,
        }
        positions = {"train": alignment.train, "test": alignment.test}
        self._exchange(
            "secureboost setup",
            {
                p: self._task(TaskKind.VERTICAL_SETUP, body, positions)
                for p in [self.guest, *self.hosts]
            },
        )
        starts: list[float] = []

        def on_tasks(tasks: Mapping[str, Message]) -> None:
            if any(m.kind is TaskKind.SB_GRADIENTS for m in tasks.values()):
                starts.append(time.monotonic())
                if len(starts) > 1 and self._on_tree is not None:
                    self._on_tree(len(starts) - 2, starts[-1] - starts[-2])

        relay(self._transport, self.guest, self.hosts, timeout_s=self._timeout_s, on_tasks=on_tasks)
        starts.append(time.monotonic())
        seconds = list(np.diff(starts).tolist())
        if seconds and self._on_tree is not None:
            self._on_tree(len(seconds) - 1, seconds[-1])
        done = relay(
            self._transport,
            self.guest,
            self.hosts,
            timeout_s=self._timeout_s,
            start={"phase": "predict"},
        )
        history = {
            "train_loss_per_tree": _floats(done.body.get("train_loss_per_tree"), "loss list"),
            "valid_loss_per_tree": _floats(done.body.get("valid_loss_per_tree"), "loss list"),
            "seconds_per_tree": seconds,
        }
        n_trees = done.body.get("n_trees")
        return VerticalOutcome(
            alignment,
            _metrics(done.body.get("test"), "held-out"),
            _metrics(done.body.get("train"), "training"),
            history,
            n_trees=int(n_trees) if isinstance(n_trees, int) else None,
        )
