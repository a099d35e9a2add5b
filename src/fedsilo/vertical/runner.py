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
3. **Held-out metrics**: computed by the guest (the label holder) and reported; then each
   party's feature importance (``VERTICAL_IMPORTANCE``, :mod:`fedsilo.vertical.importance`),
   by feature name only where that party's own config allows it.
4. ``VERTICAL_SAVE``: every party keeps its own model part; the reply says where (in a
   deployment: a path at the party and the file's SHA-256).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ErrorCode, ProtocolError, error_for
from fedsilo.privacy.he import SecretContext, generate
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.seeds import derive_seed
from fedsilo.runtime.transport import Transport
from fedsilo.vertical.bodies import (
    Body,
    Empty,
    ImportanceTask,
    PartyImportance,
    PredictionsSaved,
    PsiAligned,
    PsiOpen,
    PsiOpened,
    PsiPartyEntry,
    PsiRequested,
    PsiSettings,
    PsiSetup,
    Saved,
    ScoreOpen,
    ScoreSetup,
    SecureBoostSetup,
    SetupDone,
)
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig, VerticalPartyConfig
from fedsilo.vertical.hetero_lr import HeteroLrArbiter
from fedsilo.vertical.importance import entry
from fedsilo.vertical.secureboost import relay
from fedsilo.vertical.wire import blob, get_blob

EpochCallback = Callable[[int, float, float], None]
"""``on_epoch(epoch, taylor_loss, seconds)`` after each hetero-LR epoch; ``epoch`` counts from 1,
as ``metrics.json``'s history does."""
TreeCallback = Callable[[int, float], None]
"""``on_tree(tree, seconds)`` after each SecureBoost tree; ``tree`` counts from 1, as
``metrics.json``'s history does."""
StepCallback = Callable[[str, int, int], None]
"""``on_psi_step(step, done, total)``: after each of the relayed PSI steps (``PSI_STEPS``)."""

PSI_STEPS = ("psi_open", "psi_request", "psi_setup", "psi_intersect", "psi_finish")
IntArray = npt.NDArray[np.int64]
DATA_CODES = frozenset(
    {ErrorCode.DATA, ErrorCode.SCHEMA, ErrorCode.MISSING_VALUES, ErrorCode.CONFIG}
)
"""Error codes of a party's refusal of its own data at ``psi_open``: raised as that error."""
B = TypeVar("B", bound=Body)


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
    importance: dict[str, dict[str, Any]] = field(default_factory=dict)


def _entry(party: VerticalPartyConfig, *, scoring: bool) -> PsiPartyEntry:
    """A party's own job entry; a scoring job's is its ID column only (the new rows need no
    label; the role, features, column types and missing-value policy come from the party's
    saved part)."""
    fields = {"id_column"} if scoring else set(PsiPartyEntry.model_fields)
    return PsiPartyEntry.model_validate(party.model_dump(mode="json", include=fields))


@dataclass
class ScoreOutcome:
    """A finished scoring job as the coordinator sees it: counts and where the guest keeps
    the scores (never a score)."""

    alignment: Alignment
    predictions: PredictionsSaved

    def report(self) -> dict[str, Any]:
        """Rows, aligned (scored) and unmatched customers per party."""
        a = self.alignment
        return {
            "aligned": a.aligned,
            "local_rows": dict(a.local_rows),
            "unmatched": {p: rows - a.aligned for p, rows in a.local_rows.items()},
        }


def heldout_split(seed: int, aligned: int, test_fraction: float) -> tuple[IntArray, IntArray]:
    """Sorted (train, held-out) positions of the aligned rows, from the job seed."""
    rng = np.random.default_rng(derive_seed(seed, "vertical/test_split"))
    perm = rng.permutation(aligned)
    n_test = max(1, round(test_fraction * aligned))
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


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
        score: ScoreOpen | None = None,
        title: str | None = None,
    ) -> None:
        self.job = job
        self._score = score  # a scoring job: the training run whose saved parts score
        self.title = title or f"vertical job {job.name!r}"
        """How errors name the job (a scoring job: its name and its training run's)."""
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

    def _exchange(
        self, step: str, tasks: Mapping[str, Message], reply: type[B]
    ) -> dict[str, tuple[B, Message]]:
        """Every party's reply with its body validated as ``reply`` (ProtocolError otherwise)."""
        gathered = self._transport.exchange(tasks, timeout_s=self._timeout_s)
        where = f"{self.title}, {step}"
        if step == "psi_open":  # a party's own data problem keeps its kind (DataError, ...)
            for _, message in sorted(gathered.replies.items()):
                if message.fault is not None and message.fault.code in DATA_CODES:
                    raise error_for(message.fault.code, f"{where}: {message.fault.message}")
        replies = gathered.require_all(where)
        typed = {name: (reply.of(message), message) for name, message in replies.items()}
        if self._on_psi_step is not None and step in PSI_STEPS:
            self._on_psi_step(step, PSI_STEPS.index(step) + 1, len(PSI_STEPS))
        return typed

    def _task(
        self,
        kind: TaskKind,
        body: Body | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> Message:
        content = {} if body is None else body.dump()
        return Message(kind, self.job_id, 0, "coordinator", content, dict(arrays or {}))

    # ------------------------------------------------------------------ PSI

    def align(self) -> Alignment:
        """PSI between the guest (client) and every host (server), relayed; the shared split."""
        job, guest, hosts = self.job, self.guest, self.hosts
        settings = PsiSettings(fpr=job.psi.fpr, batch_size=job.psi.batch_size)
        opened = self._exchange(
            "psi_open",
            {
                p.name: self._task(
                    TaskKind.PSI_OPEN,
                    PsiOpen(
                        guest=guest,
                        hosts=hosts,
                        seed=job.seed,
                        psi=settings,
                        party=_entry(p, scoring=self._score is not None),
                        guest_label=job.guest.label,
                        score=self._score,
                    ),
                )
                for p in job.parties
            },
            PsiOpened,
        )
        rows = {name: body.rows for name, (body, _) in opened.items()}
        keys = {p: get_blob(reply, "channel_key", p) for p, (_, reply) in opened.items()}
        requested, request = self._exchange(
            "psi_request",
            {
                guest: self._task(
                    TaskKind.PSI_REQUEST, arrays={f"key:{h}": blob(keys[h]) for h in hosts}
                )
            },
            PsiRequested,
        )[guest]
        served = self._exchange(
            "psi_setup",
            {
                h: self._task(
                    TaskKind.PSI_SETUP,
                    PsiSetup(client_elements=requested.elements),
                    {
                        f"key:{guest}": blob(keys[guest]),
                        "request": blob(get_blob(request, f"request:{h}", guest)),
                    },
                )
                for h in hosts
            },
            Empty,
        )
        relayed: dict[str, np.ndarray] = {}
        for h in hosts:
            relayed[f"setup:{h}"] = blob(get_blob(served[h][1], "setup", h))
            relayed[f"response:{h}"] = blob(get_blob(served[h][1], "response", h))
        guest_aligned, intersected = self._exchange(
            "psi_intersect",
            {guest: self._task(TaskKind.PSI_INTERSECT, arrays=relayed)},
            PsiAligned,
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
            PsiAligned,
        )
        aligned = guest_aligned.aligned
        counts = {guest: aligned, **{h: body.aligned for h, (body, _) in finished.items()}}
        if len(set(counts.values())) != 1:
            raise ProtocolError(f"parties disagree on the number of aligned customers: {counts}")
        too_many = {p: n for p, n in rows.items() if n < aligned}
        if too_many:
            raise ProtocolError(
                f"psi: {aligned} aligned customers exceed the rows parties reported: {too_many}"
            )
        if self._score is not None:  # every aligned new customer is scored
            train, test = np.zeros(0, dtype=np.int64), np.arange(aligned, dtype=np.int64)
        else:
            train, test = heldout_split(job.seed, aligned, job.test_fraction)
        ordered = {p.name: rows[p.name] for p in job.parties}
        return Alignment(aligned, train, test, ordered, guest)

    # ------------------------------------------------------------------ the job

    def run(self) -> VerticalOutcome:
        """PSI, training with held-out scoring, feature importance, then every party saves
        its own model part."""
        outcome = self.train(self.align())
        outcome.importance = self.importance()
        saved = self._exchange(
            "save",
            {p: self._task(TaskKind.VERTICAL_SAVE) for p in [self.guest, *self.hosts]},
            Saved,
        )
        outcome.model_parts = {
            p: body.model_dump(exclude_none=True) for p, (body, _) in sorted(saved.items())
        }
        return outcome

    def importance(self) -> dict[str, dict[str, Any]]:
        """Every party's feature importance (``VERTICAL_IMPORTANCE``), named where the party
        allows it; SecureBoost's hosts get the gains of their own splits from the guest, sealed
        for each host (the coordinator relays bytes it cannot read)."""
        tasks = {p: self._task(TaskKind.VERTICAL_IMPORTANCE, ImportanceTask()) for p in self.hosts}
        guest_task = {self.guest: self._task(TaskKind.VERTICAL_IMPORTANCE, ImportanceTask())}
        reports: dict[str, PartyImportance] = {}
        if self.job.algorithm is VerticalAlgorithm.SECUREBOOST:
            guest, reply = self._exchange("importance", guest_task, PartyImportance)[self.guest]
            sealed = guest.sealed_for or []
            if set(sealed) != set(self.hosts):
                raise ProtocolError(
                    f"vertical_importance reply from {self.guest!r}: field 'sealed_for' names "
                    f"{sorted(sealed)}, the hosts are {sorted(self.hosts)}"
                )
            reports[self.guest] = guest
            tasks = {
                h: self._task(
                    TaskKind.VERTICAL_IMPORTANCE,
                    ImportanceTask(),
                    {f"from:{self.guest}": blob(get_blob(reply, f"to:{h}", self.guest))},
                )
                for h in self.hosts
            }
        else:
            tasks.update(guest_task)
        got = self._exchange("importance", tasks, PartyImportance)
        reports.update({p: body for p, (body, _) in got.items()})
        for p, report in reports.items():
            named = report.by_feature
            if (named is not None and len(named) != report.features) or (
                report.host_splits is not None or (p != self.guest and report.sealed_for)
            ):
                raise ProtocolError(
                    f"vertical_importance reply from {p!r}: field 'by_feature': "
                    f"{len(named or {})} features named of {report.features}"
                )
        return {
            p: entry("guest" if p == self.guest else "host", reports[p])
            for p in [self.guest, *self.hosts]
        }

    def run_scoring(self) -> ScoreOutcome:
        """A scoring job: PSI over the new files, the saved parts score every aligned
        customer, the guest keeps the scores (``VERTICAL_PREDICTIONS``)."""
        if self._score is None:
            raise ProtocolError(f"{self.title} is not a scoring job")
        alignment = self.align()
        job, parties = self.job, [self.guest, *self.hosts]
        if job.algorithm is VerticalAlgorithm.HETERO_LR:
            arbiter = self._arbiter()
            arbiter.score_setup()
            scored = arbiter.score()
        else:
            setup = ScoreSetup(
                algorithm="secureboost", scheme=job.he.scheme, guest=self.guest, hosts=self.hosts
            )
            self._exchange(
                "score setup",
                {p: self._task(TaskKind.VERTICAL_SCORE_SETUP, setup) for p in parties},
                SetupDone,
            )
            done = relay(*self._sb(), timeout_s=self._timeout_s, phase="predict")
            if done.scored is None:
                raise ProtocolError(f"sb_step reply from {self.guest!r}: field 'scored' is missing")
            scored = done.scored
        saved, _ = self._exchange(
            "predictions",
            {self.guest: self._task(TaskKind.VERTICAL_PREDICTIONS)},
            PredictionsSaved,
        )[self.guest]
        if not scored == saved.rows == alignment.aligned:
            raise ProtocolError(
                f"vertical_predictions reply from {self.guest!r}: field 'rows': {saved.rows} "
                f"predictions, {scored} scored, {alignment.aligned} aligned"
            )
        return ScoreOutcome(alignment, saved)

    def _sb(self) -> tuple[Transport, str, str, list[str]]:
        return (self._transport, self.job_id, self.guest, self.hosts)

    def train(self, alignment: Alignment) -> VerticalOutcome:
        """Train the job's model over the aligned rows and score the held-out rows."""
        if self.job.algorithm is VerticalAlgorithm.HETERO_LR:
            return self._hetero_lr(alignment)
        return self._secureboost(alignment)

    def _arbiter(self) -> HeteroLrArbiter:
        """The hetero-LR arbiter over a fresh HE key pair (unless one was given)."""
        job = self.job
        secret = self._secret or generate(job.he.scheme, job.he.backend_config())
        return HeteroLrArbiter(
            self.job_id,
            self._transport,
            secret,
            guest=self.guest,
            hosts=self.hosts,
            params=job.hetero_lr.params(),
            seed=job.seed,
            on_epoch=self._on_epoch,
        )

    def _hetero_lr(self, alignment: Alignment) -> VerticalOutcome:
        arbiter = self._arbiter()
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
        setup = SecureBoostSetup(
            algorithm="secureboost",
            scheme=job.he.scheme,
            params=dict(params.__dict__),
            seed=derive_seed(job.seed, "secureboost/validation"),
            paillier_bits=job.he.key_bits,
        )
        positions = {"train": alignment.train, "test": alignment.test}
        parties = [self.guest, *self.hosts]
        setups = self._exchange(
            "secureboost setup",
            {p: self._task(TaskKind.VERTICAL_SETUP, setup, positions) for p in parties},
            SetupDone,
        )
        for p, (ready, _) in setups.items():
            if ready.role != ("guest" if p == self.guest else "host"):
                raise ProtocolError(
                    f"vertical_setup reply from {p!r}: field 'role': {ready.role!r}"
                )
        starts: list[float] = []

        def on_tasks(tasks: Mapping[str, Message]) -> None:
            if any(m.kind is TaskKind.SB_GRADIENTS for m in tasks.values()):
                starts.append(time.monotonic())
                if len(starts) > 1 and self._on_tree is not None:  # the tree before this one
                    self._on_tree(len(starts) - 1, starts[-1] - starts[-2])

        sb = self._sb()
        relay(*sb, timeout_s=self._timeout_s, on_tasks=on_tasks)
        starts.append(time.monotonic())
        seconds = list(np.diff(starts).tolist())
        if seconds and self._on_tree is not None:
            self._on_tree(len(seconds), seconds[-1])
        done = relay(*sb, timeout_s=self._timeout_s, phase="predict")
        where = f"sb_step reply from {self.guest!r}"
        if done.test is None or done.train is None or done.n_trees is None:
            raise ProtocolError(f"{where}: the prediction's metrics or tree count are missing")
        train_loss = done.train_loss_per_tree or []
        valid_loss = done.valid_loss_per_tree or []
        if not done.n_trees <= len(train_loss) <= job.secureboost.n_trees:
            raise ProtocolError(
                f"{where}: field 'n_trees': {done.n_trees} trees, {len(train_loss)} losses, "
                f"at most {job.secureboost.n_trees} asked"
            )
        history = {
            "train_loss_per_tree": train_loss,
            "valid_loss_per_tree": valid_loss,
            "seconds_per_tree": seconds,
        }
        return VerticalOutcome(alignment, done.test, done.train, history, n_trees=done.n_trees)
