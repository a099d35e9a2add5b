"""One typed body per vertical task kind: tasks and replies, checked where they arrive.

Every vertical message body (PSI, hetero LR, SecureBoost, saving) is one of the frozen
pydantic models below, validated on both sides of the wire: a party parses the coordinator's
task with :meth:`Body.of` before it touches a field, and the coordinator parses each party's
reply the same way. The models forbid unknown keys, non-finite floats, negative counts and
wrong types (``strict``: ``true`` is not a count), so nothing downstream indexes an untyped
dict from another organization. A body that fails is a :class:`~fedsilo.errors.ProtocolError`
worded as every body refusal (:func:`fedsilo.protocol.bodies.parse_body`), e.g.::

    ProtocolError: party 'bank' round 0: psi_intersect field 'aligned' is invalid: Input
    should be greater than or equal to 0

Arrays (row positions, ciphertext bytes, masked values) travel beside the body in
:attr:`Message.arrays`; their dtypes and shapes are checked where they are read
(:mod:`fedsilo.vertical.wire`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, JsonValue

from fedsilo.data.tabular import MissingPolicy
from fedsilo.privacy.he import HeScheme
from fedsilo.protocol.bodies import Body as ProtocolBody
from fedsilo.protocol.bodies import DeclaredBody
from fedsilo.protocol.messages import Message, origin

Count = Annotated[int, Field(ge=0)]
PartyName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.\-]*$")]
Metrics = dict[str, float]


class Body(ProtocolBody):
    """Base of every vertical body: the protocol's body base, strict (``true`` is no count)."""

    model_config = ConfigDict(strict=True)


class Empty(Body):
    """A task or reply whose content is all in its arrays (or that only acknowledges)."""


# ---------------------------------------------------------------------- PSI


class PsiSettings(Body):
    fpr: Annotated[float, Field(gt=0, lt=1)] | None = None
    batch_size: Annotated[int, Field(ge=1)] = 100_000


class PsiPartyEntry(Body):
    """A party's own job entry: the column names it loads its table with."""

    id_column: Annotated[str, Field(min_length=1)] = "id"
    label: str | None = None
    label_positive: str | None = None
    features: list[str] | None = None
    columns: dict[str, DeclaredBody] = Field(default_factory=dict)
    missing: Annotated[MissingPolicy, Field(strict=False)] = MissingPolicy.REJECT


JobId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.\-]*$")]


class ScoreOpen(Body):
    """A scoring job's PSI_OPEN: the training run whose saved parts score the new rows.

    The party reads its own part of ``run`` (its features, its role) and the file it keeps for
    scoring; a party without that part refuses, naming itself and where it looked.
    """

    run: JobId
    algorithm: Literal["hetero_lr", "secureboost"]


class PsiOpen(Body):
    guest: PartyName
    hosts: Annotated[list[PartyName], Field(min_length=1)]
    seed: int
    psi: PsiSettings = PsiSettings()
    party: PsiPartyEntry
    guest_label: str | None = None  # hosts refuse a column of that name (a label leak)
    score: ScoreOpen | None = None


class PsiOpened(Body):
    rows: Count


class PsiRequested(Body):
    elements: Count


class PsiSetup(Body):
    client_elements: Count


class PsiAligned(Body):
    """The reply to ``PSI_INTERSECT`` (guest) and ``PSI_FINISH`` (hosts)."""

    aligned: Count


# ---------------------------------------------------------------------- setup and saving


class HeteroLrSetup(Body):
    algorithm: Literal["hetero_lr"]
    scheme: Annotated[HeScheme, Field(strict=False)]
    guest: PartyName
    hosts: Annotated[list[PartyName], Field(min_length=1)]
    l2: Annotated[float, Field(ge=0)]


class SecureBoostSetup(Body):
    algorithm: Literal["secureboost"]
    scheme: Annotated[HeScheme, Field(strict=False)]
    params: dict[str, JsonValue]  # TreeParams checks its own ranges
    seed: int
    paillier_bits: Annotated[int, Field(ge=512)]


VerticalSetup = Annotated[HeteroLrSetup | SecureBoostSetup, Field(discriminator="algorithm")]


class SetupTask(Body):
    """``VERTICAL_SETUP``: the algorithm's setup (a union discriminated on ``algorithm``)."""

    setup: VerticalSetup

    @classmethod
    def of(cls, msg: Message, *, where: str = "") -> Self:
        return cls.parse({"setup": msg.body}, origin(msg, where))


class SetupDone(Body):
    role: Literal["guest", "host"]
    features: Count | None = None


class Saved(Body):
    stored: Literal["in memory (simulation)", "at the party"]
    path: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class ScoreSetup(Body):
    """``VERTICAL_SCORE_SETUP``: roles and, for hetero LR, the scheme of the fresh HE key
    (``he_public`` rides beside it). Each party scores with its own saved part."""

    algorithm: Literal["hetero_lr", "secureboost"]
    scheme: Annotated[HeScheme, Field(strict=False)]
    guest: PartyName
    hosts: Annotated[list[PartyName], Field(min_length=1)]


class Scored(Body):
    """The guest's reply once it holds the scores of the aligned new customers."""

    rows: Count


class PredictionsSaved(Body):
    """``VERTICAL_PREDICTIONS`` reply: where the guest keeps the scores (never the scores)."""

    rows: Count
    stored: Literal["in memory (simulation)", "at the party"]
    path: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class FeatureImportance(Body):
    """One feature's importance, or one party's total: hetero LR's standardized coefficient
    (total: the sum of absolute coefficients), SecureBoost's split count and total gain."""

    coefficient: float | None = None
    splits: Count | None = None
    gain: float | None = None


class HostSplits(Body):
    """The gain of each split a host owns (by its split-table record), for that host."""

    records: list[Count] = Field(default_factory=list)
    gains: list[float] = Field(default_factory=list)


class ImportanceTask(Body):
    """``VERTICAL_IMPORTANCE``. SecureBoost hosts get the gains of their own splits as a
    :class:`HostSplits` the guest sealed for them (array ``from:<guest>``): the coordinator
    relays it and never reads a gain."""


class PartyImportance(Body):
    """A party's importance: its total always; ``by_feature`` only if its own config allows
    its feature names to leave it (``share_feature_names``, default off). SecureBoost's guest
    seals, per host, the gains of that host's splits for that host (array ``to:<host>``) and
    names those hosts in ``sealed_for``."""

    features: Count
    total: FeatureImportance
    by_feature: dict[str, FeatureImportance] | None = None
    host_splits: dict[PartyName, HostSplits] | None = None  # the guest's own, never on the wire
    sealed_for: list[PartyName] | None = None  # the guest's reply: hosts it sealed gains for


# ---------------------------------------------------------------------- hetero LR


class LrUpdate(Body):
    learning_rate: Annotated[float, Field(gt=0)]


class Unmask(Body):
    what: Literal["loss", "scores"]


class LossReply(Body):
    loss: float


class MetricsReply(Body):
    metrics: Metrics


# ---------------------------------------------------------------------- SecureBoost

HostKind = Literal["sb_setup", "sb_gradients", "sb_histograms", "sb_split", "sb_route"]


class Relayed(Body):
    """One host task (guest -> host) or host reply (host -> guest) inside an ``SB_STEP``.

    The coordinator turns it into a real :class:`Message` of ``kind`` for the host with the
    job's id; the arrays ride beside it as ``"<host>/<name>"`` in the step message.
    """

    kind: HostKind
    round: Count = 0
    body: dict[str, JsonValue] = Field(default_factory=dict)


class SbStep(Body):
    """``SB_STEP`` task: start (``hosts``, ``phase``) or the hosts' replies to the last step."""

    start: bool = False
    phase: Literal["train", "predict"] = "train"
    hosts: list[PartyName] = Field(default_factory=list)
    replies: dict[PartyName, Relayed] = Field(default_factory=dict)


class SbStepReply(Body):
    """The guest's answer: host tasks to relay, or ``done`` (with metrics after prediction)."""

    done: bool
    tasks: dict[PartyName, Relayed] = Field(default_factory=dict)
    test: Metrics | None = None
    train: Metrics | None = None
    train_loss_per_tree: list[float] | None = None
    valid_loss_per_tree: list[float] | None = None
    n_trees: Count | None = None
    scored: Count | None = None  # a scoring job: how many aligned new customers were scored


class SbSetup(Body):
    scheme: Annotated[HeScheme, Field(strict=False)]
    n_bins: Annotated[int, Field(ge=2, le=256)]


class SbSetupDone(Body):
    n_features: Annotated[int, Field(ge=1)]


class SbHistograms(Body):
    n_nodes: Count
    widths: list[Count] | None = None


class SplitSpec(Body):
    feature: Count
    bin: Count


class SbSplit(Body):
    splits: list[SplitSpec]


class SbSplitDone(Body):
    records: list[Count]


class SbRoute(Body):
    phase: Literal["train", "predict"] = "train"
