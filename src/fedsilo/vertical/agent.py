"""A vertical party: its own table, PSI over the coordinator's relay, then its model role.

:class:`VerticalPartyAgent` is the one transport ``Handler`` of an organization in a vertical
job, in the simulation and in a deployed party process alike. It holds only the table it
loaded from its own file (``path``/``builtin``; in a deployment that comes from ``party.toml``,
never from the coordinator) and plays, in order:

1. **PSI** (:mod:`fedsilo.vertical.psi`, ``RevealTo.BOTH``): the guest (label holder) is the
   PSI client of every host. ``PSI_OPEN`` gives the party its job entry (ID column, label,
   features, seed) and it loads and checks its table and its IDs (none missing, none
   repeated after normalization, :mod:`fedsilo.vertical.ids`); ``PSI_REQUEST``/``PSI_SETUP``/
   ``PSI_RESPOND``/``PSI_INTERSECT``/``PSI_FINISH`` are the protocol's byte messages, relayed
   by the coordinator. The guest's finish message (the shared normalized IDs, in the keyed
   order) and the positions each host keeps are **sealed** for that host
   (:class:`~fedsilo.vertical.channel.PartyChannel`), so the coordinator never sees an ID:
   it sees set sizes, blinded elliptic-curve points and sealed bytes. Afterwards row ``k`` of
   every party's aligned table is the same customer.
2. **Model**: ``VERTICAL_SETUP`` names the algorithm; the agent builds
   :class:`~fedsilo.vertical.hetero_lr.HeteroLrParty` or a
   :class:`~fedsilo.vertical.sb_role.SecureBoostRole` over its aligned rows and hands every
   later task to that role's route table.
3. ``VERTICAL_SAVE``: the party writes its own model part under its ``models_dir`` (deployment)
   and reports the file's SHA-256; in simulation the part stays in memory for
   :meth:`save_model`.

The agent is a route table (:attr:`VerticalPartyAgent.routes`, every body a typed model from
:mod:`fedsilo.vertical.bodies`); :func:`fedsilo.protocol.serve.serve` makes it the bytes
handler (:meth:`VerticalPartyAgent.handle`, simulation) and the party process serves it with
its other roles. A route refuses by raising; the reply then carries the error's code.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from fedsilo.errors import ConfigError, DataError, NotReadyError, ProtocolError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import serve
from fedsilo.vertical.bodies import (
    Body,
    Empty,
    HeteroLrSetup,
    HostSplits,
    ImportanceTask,
    PartyImportance,
    PredictionsSaved,
    PsiAligned,
    PsiOpen,
    PsiOpened,
    PsiRequested,
    PsiSettings,
    PsiSetup,
    Saved,
    ScoreOpen,
    ScoreSetup,
    SetupTask,
)
from fedsilo.vertical.channel import PartyChannel
from fedsilo.vertical.config import ScorePartyConfig, VerticalPartyConfig
from fedsilo.vertical.data import PartyTable, load_party_table, load_scoring_table, select_rows
from fedsilo.vertical.hetero_lr import HeteroLrParty
from fedsilo.vertical.hetero_lr.party import LrPart
from fedsilo.vertical.ids import normalize_ids
from fedsilo.vertical.importance import lr_importance
from fedsilo.vertical.kinds import ROLE_KINDS
from fedsilo.vertical.psi import PsiClient, PsiServer, RevealTo
from fedsilo.vertical.sb_role import SbPart, SecureBoostRole
from fedsilo.vertical.wire import blob, get_blob, get_positions

log = logging.getLogger(__name__)

MIN_ALIGNED = 10
"""Fewest customers shared by all parties that a job (training or scoring) goes on with: a
check that the parties' IDs match (far fewer shared customers than rows usually means another
column or differently written IDs), added with the first PSI alignment. It is not a privacy
limit: PSI tells each party which of its own customers are shared whatever their number."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
PREDICTIONS_FILE = "predictions.csv"
Route = Callable[[Message], Message]


class VerticalPartyAgent:
    """One organization of a vertical job: its own table, PSI, then its model role."""

    def __init__(
        self,
        name: str,
        *,
        path: Path | None = None,
        builtin: str | None = None,
        models_dir: Path | None = None,
        frame: object = None,
        score_path: Path | None = None,
        parts_dir: Path | None = None,
        share_feature_names: bool = False,
    ) -> None:
        sources = sum(x is not None for x in (path, builtin, frame))
        if sources > 1 or (sources == 0 and score_path is None):
            raise DataError(
                f"party {name!r} has no data or more than one source: give it a path or a "
                f"builtin in [[parties]], or pass its rows as a DataFrame, "
                f"fedsilo.simulate(job, data={{{name!r}: df}})"
            )
        self.name = name
        self._path = path
        self._builtin = builtin
        self._frame = frame
        self._models_dir = models_dir
        self._score_path = score_path
        self._parts_dir = parts_dir  # simulation: the training run's models/ folder
        self._share_names = share_feature_names  # this party's own setting, never the job's
        self._part: LrPart | SbPart | None = None
        self.predictions: tuple[str, list[object], np.ndarray] | None = None
        """A scoring job's guest: (ID column, IDs, scores) of the aligned new customers."""
        self._job = ""
        self._table: PartyTable | None = None
        self._channel = PartyChannel(name)
        self._guest = ""
        self._hosts: list[str] = []
        self._seed = 0
        self._psi = PsiSettings()
        self._clients: dict[str, PsiClient] = {}
        self._server: PsiServer | None = None
        self._id_column = "id"
        self.aligned: PartyTable | None = None
        self.role: HeteroLrParty | SecureBoostRole | None = None
        self.routes = self._route_table()
        """The agent's route table: PSI, setup and saving here, training steps to the role."""
        self._handler = serve(name, self.routes)

    @classmethod
    def from_config(cls, party: VerticalPartyConfig, frame: object = None) -> VerticalPartyAgent:
        """The simulation's agent: the data source the job file names for this party, or the
        DataFrame given for it (``simulate(job, data={name: df})``)."""
        share = party.share_feature_names
        if frame is not None:
            return cls(party.name, frame=frame, share_feature_names=share)
        return cls(party.name, path=party.path, builtin=party.builtin, share_feature_names=share)

    @classmethod
    def for_scoring(cls, party: ScorePartyConfig, parts_dir: Path) -> VerticalPartyAgent:
        """The simulation's agent of a scoring job: its new file, its part in ``parts_dir``."""
        return cls(party.name, score_path=party.path, parts_dir=parts_dir)

    @property
    def is_guest(self) -> bool:
        return self.name == self._guest

    # ------------------------------------------------------------------ plumbing

    def _route_table(self) -> dict[TaskKind, Route]:
        table: dict[TaskKind, Route] = {kind: self._to_role for kind in ROLE_KINDS}
        table.update(
            {
                TaskKind.PSI_OPEN: self._open,
                TaskKind.PSI_REQUEST: self._request,
                TaskKind.PSI_SETUP: self._setup_server,
                TaskKind.PSI_INTERSECT: self._intersect,
                TaskKind.PSI_FINISH: self._finish,
                TaskKind.VERTICAL_SETUP: self._make_role,
                TaskKind.VERTICAL_SAVE: self._save,
                TaskKind.VERTICAL_SCORE_SETUP: self._score_role,
                TaskKind.VERTICAL_PREDICTIONS: self._predictions,
                TaskKind.VERTICAL_IMPORTANCE: self._importance,
            }
        )
        return table

    def handle(self, data: bytes) -> bytes:
        return self._handler(data)

    def _to_role(self, msg: Message) -> Message:
        if self.role is None:
            raise NotReadyError(
                f"party {self.name!r} got a {msg.kind.value} task before the vertical setup"
            )
        route = self.role.routes.get(msg.kind)
        if route is None:
            raise ProtocolError(
                f"party {self.name!r} ({type(self.role).__name__}) does not handle "
                f"{msg.kind.value!r} tasks"
            )
        return route(msg)

    def _reply(
        self,
        msg: Message,
        body: Body | None = None,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> Message:
        content = {} if body is None else body.dump()
        return Message(msg.kind, msg.job_id, msg.round, self.name, content, arrays or {})

    def _need_open(self, msg: Message) -> PartyTable:
        if self._table is None or msg.job_id != self._job:
            raise NotReadyError(f"party {self.name!r}: {msg.kind.value} before psi_open")
        return self._table

    def _need_guest(self, msg: Message, want: bool) -> None:
        if self.is_guest != want:
            role = "guest (PSI client)" if want else "host (PSI server)"
            raise ProtocolError(f"party {self.name!r}: {msg.kind.value} is for the {role}")

    # ------------------------------------------------------------------ PSI

    def _open(self, msg: Message) -> Message:
        """Load this party's own table with the job's column names; sizes and channel key."""
        body = PsiOpen.of(msg)
        if body.score is not None:
            return self._open_scoring(msg, body, body.score)
        entry, guest, hosts = body.party, body.guest, body.hosts
        if self._path is None and self._builtin is None and self._frame is None:
            raise ConfigError(
                f"party {self.name!r} has no vertical training data: add [vertical] data = "
                '"<file>" to its party.toml'
            )
        try:
            config = VerticalPartyConfig.model_validate(
                {
                    "name": self.name,
                    "path": self._path,
                    "builtin": self._builtin,
                    **entry.model_dump(mode="json", exclude_none=True),
                }
            )
        except ValidationError as exc:
            raise ProtocolError(f"party {self.name!r}: malformed psi_open task: {exc}") from None
        self._seed, self._psi = body.seed, body.psi
        if (config.label is not None) != (guest == self.name) or (
            guest != self.name and self.name not in hosts
        ):
            raise ProtocolError(
                f"party {self.name!r}: the job's roles (guest {guest!r}, hosts {hosts}) do not "
                "match its label setting"
            )
        self._part = None
        table = load_party_table(config, self._frame, guest_label=body.guest_label)
        return self._opened(msg, body, table)

    def _opened(self, msg: Message, body: PsiOpen, table: PartyTable) -> Message:
        # Missing and duplicate IDs are refused now, before any PSI message (PSI_REQUEST /
        # PSI_SETUP normalize the IDs again, with the same rules).
        normalize_ids(table.ids, party=self.name, column=body.party.id_column)
        self._table = table
        self._job, self._guest, self._hosts = msg.job_id, body.guest, body.hosts
        self._channel = PartyChannel(self.name)
        self._clients, self._server, self.aligned, self.role = {}, None, None, None
        self._id_column = body.party.id_column
        self.predictions = None
        return self._reply(
            msg,
            PsiOpened(rows=len(self._table.ids)),
            {"channel_key": blob(self._channel.public_key)},
        )

    def _part_path(self, score: ScoreOpen) -> Path:
        suffix = ".safetensors" if score.algorithm == "hetero_lr" else ".json"
        if self._parts_dir is not None:
            return self._parts_dir / f"{self.name}{suffix}"
        if self._models_dir is None:
            raise ConfigError(f"party {self.name!r} keeps no model parts ([vertical] models)")
        return self._models_dir / score.run / f"{self.name}{suffix}"

    def _open_scoring(self, msg: Message, body: PsiOpen, score: ScoreOpen) -> Message:
        """A scoring job: this party's saved part of ``score.run``, its file of new customers."""
        if self._score_path is None:
            raise ConfigError(
                f"party {self.name!r} has no file of customers to score: add [vertical] "
                'score_data = "<file>" to its party.toml'
            )
        path = self._part_path(score)
        if not path.is_file():
            raise DataError(
                f"party {self.name!r} has no saved model part of training run {score.run!r} "
                f"(looked for {path}); score with the run this party trained in, or copy its "
                "part there"
            )
        part: LrPart | SbPart = (
            LrPart.load(path, self.name)
            if score.algorithm == "hetero_lr"
            else SbPart.load(path, self.name)
        )
        is_guest = part.role == "guest"
        if is_guest != (body.guest == self.name) or (not is_guest and self.name not in body.hosts):
            raise ProtocolError(
                f"party {self.name!r}: the scoring job's roles (guest {body.guest!r}) do not "
                f"match its saved part of {score.run!r} (a {'guest' if is_guest else 'host'})"
            )
        table = load_scoring_table(
            self.name, self._score_path, body.party.id_column, part.encoding, run=score.run
        )
        self._part = part
        return self._opened(msg, body, table)

    def _peer_keys(self, msg: Message) -> None:
        peers = {
            name.removeprefix("key:"): arr.tobytes()
            for name, arr in msg.arrays.items()
            if name.startswith("key:")
        }
        self._channel.connect(self._job, peers)

    def _psi_batch(self) -> int:
        return self._psi.batch_size

    def _psi_progress(self, role: str) -> Callable[[int, int], None]:
        """Log batch progress of a long PSI step (each batch of ``[psi] batch_size`` IDs)."""

        def report(done: int, total: int) -> None:
            if total > self._psi_batch():  # one batch needs no progress line
                log.info("party %r PSI %s: %d of %d IDs", self.name, role, done, total)

        return report

    def _request(self, msg: Message) -> Message:
        """Guest: one PSI client per host (the keyed order makes their results combinable)."""
        table = self._need_open(msg)
        self._need_guest(msg, True)
        Empty.of(msg)
        self._peer_keys(msg)
        arrays: dict[str, np.ndarray] = {}
        for host in self._hosts:
            client = PsiClient(
                table.ids,
                party=self.name,
                column=self._id_column,
                reveal=RevealTo.BOTH,
                seed=self._seed,
                batch_size=self._psi_batch(),
                on_progress=self._psi_progress(f"client for {host!r}"),
            )
            self._clients[host] = client
            arrays[f"request:{host}"] = blob(client.request())
        return self._reply(msg, PsiRequested(elements=client.num_elements), arrays)

    def _setup_server(self, msg: Message) -> Message:
        """Host: the PSI server's setup for the guest's set size, and its response."""
        table = self._need_open(msg)
        self._need_guest(msg, False)
        count = PsiSetup.of(msg).client_elements
        self._peer_keys(msg)
        self._server = PsiServer(
            table.ids,
            party=self.name,
            column=self._id_column,
            reveal=RevealTo.BOTH,
            fpr=self._psi.fpr,
            batch_size=self._psi_batch(),
            on_progress=self._psi_progress("server"),
        )
        setup = self._server.setup_message(count)
        response = self._server.respond(get_blob(msg, "request", self.name))
        return self._reply(msg, arrays={"setup": blob(setup), "response": blob(response)})

    def _intersect(self, msg: Message) -> Message:
        """Guest: keep customers shared by every host; seal each host's finish and kept rows."""
        table = self._need_open(msg)
        self._need_guest(msg, True)
        Empty.of(msg)
        pairwise: dict[str, np.ndarray] = {}
        kept: np.ndarray | None = None
        for host in self._hosts:
            client = self._clients.get(host)
            if client is None:
                raise NotReadyError(f"party {self.name!r}: psi_intersect before psi_request")
            client.intersect(
                get_blob(msg, f"setup:{host}", self.name),
                get_blob(msg, f"response:{host}", self.name),
            )
            rows = client.aligned_rows().indices
            pairwise[host] = rows
            kept = rows if kept is None else kept[np.isin(kept, rows)]
        assert kept is not None
        if len(kept) < MIN_ALIGNED:
            raise DataError(self._too_few(len(kept)))
        arrays: dict[str, np.ndarray] = {}
        for host in self._hosts:
            keep = np.isin(pairwise[host], kept).astype(np.uint8)
            finish = self._clients[host].finish_message()
            arrays[f"to:{host}"] = blob(self._channel.seal(host, "psi_finish", finish))
            arrays[f"keep:{host}"] = blob(self._channel.seal(host, "psi_keep", keep.tobytes()))
        self.aligned = select_rows(table, kept)
        self._clients = {}
        return self._reply(msg, PsiAligned(aligned=len(kept)), arrays)

    def _too_few(self, shared: int) -> str:
        """Why fewer than MIN_ALIGNED shared customers stop the job, and what to check."""
        ids = (
            f"check every party's ID column and values (guest {self.name!r}, ID column "
            f'{self._id_column!r}; docs/vertical.md, "Customer IDs")'
        )
        if self._part is None:
            return (
                f"only {shared} customers are shared by all parties; a vertical job needs at "
                f"least {MIN_ALIGNED} (fewer usually means the parties' IDs do not match): {ids}"
            )
        return (
            f"scoring needs at least {MIN_ALIGNED} customers shared by all parties; {shared} "
            "are shared. The floor is training's, a check against IDs that do not match, not "
            f"a privacy limit: {ids}. If they are right, score these customers together with "
            "others (a customer's score does not depend on the rest of the batch)."
        )

    def _finish(self, msg: Message) -> Message:
        table = self._need_open(msg)
        self._need_guest(msg, False)
        Empty.of(msg)
        if self._server is None:
            raise NotReadyError(f"party {self.name!r}: psi_finish before psi_setup")
        finish = self._channel.open(
            self._guest, "psi_finish", get_blob(msg, f"from:{self._guest}", self.name)
        )
        keep_bytes = self._channel.open(
            self._guest, "psi_keep", get_blob(msg, f"keep:{self._guest}", self.name)
        )
        rows = self._server.finish(finish).indices
        keep = np.frombuffer(keep_bytes, dtype=np.uint8)
        if keep.shape != rows.shape or not np.isin(keep, (0, 1)).all():
            raise ProtocolError(
                f"party {self.name!r}: the guest's kept positions do not match the PSI result"
            )
        self.aligned = select_rows(table, rows[keep.astype(bool)])
        self._server = None
        return self._reply(msg, PsiAligned(aligned=len(self.aligned.ids)))

    # ------------------------------------------------------------------ model

    def _make_role(self, msg: Message) -> Message:
        if self.aligned is None or msg.job_id != self._job:
            raise NotReadyError(f"party {self.name!r}: vertical_setup before PSI alignment")
        setup = SetupTask.of(msg).setup
        # Missing-value fills come from the training rows, as the standardization does.
        train = get_positions(msg, "train", len(self.aligned.ids), self.name)
        t = self.aligned = self.aligned.fitted(train, where=f"party {self.name!r}")
        if isinstance(setup, HeteroLrSetup):
            lr = HeteroLrParty(self.name, t.features, t.labels, t.encoding)
            self.role = lr
            return lr.setup(msg, setup)
        sb = SecureBoostRole(self.name, t.features, t.labels, t.encoding)
        self.role = sb
        return sb.setup(msg, setup)

    def _score_role(self, msg: Message) -> Message:
        """``VERTICAL_SCORE_SETUP``: this party's saved part over its aligned new customers."""
        if self.aligned is None or msg.job_id != self._job or self._part is None:
            raise NotReadyError(f"party {self.name!r}: vertical_score_setup before scoring PSI")
        t, part = self.aligned, self._part
        if isinstance(part, LrPart):
            lr = HeteroLrParty(self.name, t.features, None, t.encoding, scoring=part)
            self.role = lr
            return lr.score_setup(msg, ScoreSetup.of(msg))
        sb = SecureBoostRole(self.name, t.features, None, t.encoding, scoring=part)
        self.role = sb
        return sb.score_setup(msg)

    def _predictions(self, msg: Message) -> Message:
        """Guest of a scoring job: keep the new customers' scores (a CSV at the party)."""
        self._need_open(msg)
        self._need_guest(msg, True)
        Empty.of(msg)
        role, aligned = self.role, self.aligned
        scores = None
        if isinstance(role, HeteroLrParty) and self._part is not None:
            scores = role.test_scores
        elif isinstance(role, SecureBoostRole) and self._part is not None:
            scores = role.scores
        if scores is None or aligned is None or len(scores) != len(aligned.ids):
            raise NotReadyError(f"party {self.name!r}: vertical_predictions before scoring")
        self.predictions = (self._id_column, list(aligned.ids), np.asarray(scores))
        if self._models_dir is None:
            return self._reply(
                msg, PredictionsSaved(rows=len(scores), stored="in memory (simulation)")
            )
        if not _SAFE_NAME.fullmatch(msg.job_id) or ".." in msg.job_id:
            raise ProtocolError(f"party {self.name!r}: job id {msg.job_id!r} is not a safe name")
        path = self._models_dir / msg.job_id / PREDICTIONS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_predictions(path, *self.predictions)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        log.info("party %s wrote %d predictions to %s", self.name, len(scores), path)
        return self._reply(
            msg,
            PredictionsSaved(
                rows=len(scores), stored="at the party", path=str(path), sha256=digest
            ),
        )

    def importance(self, splits: HostSplits | None = None, *, named: bool) -> PartyImportance:
        """This party's feature importance (its names only if ``named``)."""
        role = self.role
        if isinstance(role, HeteroLrParty):
            d = len(role.feature_names)
            return lr_importance(role.feature_names, role.weights[:d], named=named)
        if isinstance(role, SecureBoostRole):
            return role.importance(splits, named=named)
        raise NotReadyError(f"party {self.name!r}: vertical_importance before training")

    def _importance(self, msg: Message) -> Message:
        """``VERTICAL_IMPORTANCE``: named only if this party's own config allows it. The
        SecureBoost guest seals each host's split gains for that host; a host opens its own."""
        self._need_open(msg)
        ImportanceTask.of(msg)
        splits = None
        if not self.is_guest and f"from:{self._guest}" in msg.arrays:
            sealed = get_blob(msg, f"from:{self._guest}", self.name)
            raw = self._channel.open(self._guest, "importance", sealed)
            try:
                splits = HostSplits.model_validate_json(raw)
            except ValidationError as exc:
                raise ProtocolError(
                    f"party {self.name!r}: vertical_importance gains sealed by "
                    f"{self._guest!r} are malformed: {exc.errors()[0]['msg']}"
                ) from exc
        report = self.importance(splits, named=self._share_names)
        if report.host_splits is None:
            return self._reply(msg, report)
        arrays = {
            f"to:{host}": blob(
                self._channel.seal(host, "importance", gains.model_dump_json().encode())
            )
            for host, gains in report.host_splits.items()
        }
        body = report.model_copy(
            update={"host_splits": None, "sealed_for": sorted(report.host_splits)}
        )
        return self._reply(msg, body, arrays)

    def heldout_scores(self, positions: np.ndarray) -> dict[object, float] | None:
        """The guest's scores of the aligned rows at ``positions``, by customer ID (a
        simulation's guest, after training); ``None`` at a host."""
        role, aligned = self.role, self.aligned
        if not self.is_guest or aligned is None:
            return None
        if isinstance(role, HeteroLrParty) and role.test_scores is not None:
            scores = dict(zip(positions.tolist(), role.test_scores.tolist(), strict=True))
        elif isinstance(role, SecureBoostRole) and role.scores is not None:
            scores = {int(k): float(role.scores[k]) for k in positions}
        else:
            return None
        return {aligned.ids[k]: v for k, v in scores.items()}

    def model_suffix(self) -> str:
        return ".safetensors" if isinstance(self.role, HeteroLrParty) else ".json"

    def save_model(self, path: str | Path) -> Path:
        """Write this party's own model part (and nothing of any other party's)."""
        if self.role is None:
            raise ProtocolError(f"party {self.name!r} has no trained model to save")
        return self.role.save(Path(path))

    def _save(self, msg: Message) -> Message:
        self._need_open(msg)
        Empty.of(msg)
        unsafe = not _SAFE_NAME.fullmatch(msg.job_id) or ".." in msg.job_id
        if self._models_dir is not None and unsafe:
            raise ProtocolError(f"party {self.name!r}: job id {msg.job_id!r} is not a safe name")
        if self.role is None:
            raise NotReadyError(f"party {self.name!r}: vertical_save before training")
        if self._models_dir is None:
            return self._reply(msg, Saved(stored="in memory (simulation)"))
        path = self._models_dir / msg.job_id / f"{self.name}{self.model_suffix()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save_model(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        log.info("party %s saved its model part to %s", self.name, path)
        return self._reply(msg, Saved(stored="at the party", path=str(path), sha256=digest))


def write_predictions(path: Path, id_column: str, ids: list[object], scores: np.ndarray) -> Path:
    """The guest's predictions: its ID column and ``score`` (the probability of class 1)."""
    frame = pd.DataFrame({id_column: ids, "score": np.asarray(scores, dtype=np.float64)})
    frame.to_csv(path, index=False, float_format="%.17g")
    return path
