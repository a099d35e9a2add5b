"""One typed body per task kind, for the task and for the reply.

Every body is a frozen pydantic model that forbids unknown fields and non-finite floats, so a
body is checked the same way wherever it enters: :func:`parse_body` on the party side (the
coordinator's task) and on the coordinator side (the party's reply). What a body cannot know
alone (counts no larger than the party declared at setup, the job's parameter shapes, a
confusion matrix of the job's classes) is checked against that context by the coordinator
(:mod:`fedsilo.runtime.replies`).

A party never sees a body it has not validated and the coordinator never indexes a dict a party
sent: both call :func:`parse_body` and read attributes.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import cache
from typing import Annotated, Any, Literal, Self, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from fedsilo.data.tabular import ColumnType
from fedsilo.errors import ProtocolError
from fedsilo.protocol.messages import Message, origin

Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class Body(BaseModel):
    """Base of every task and reply body: frozen, no unknown field, no NaN or infinity."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True
    )

    @classmethod
    def of(cls, msg: Message, *, where: str = "") -> Self:
        """``msg``'s body as this model (see :func:`parse_body`)."""
        return parse_body(cls, msg, where=where)

    @classmethod
    def parse(cls, body: object, where: str) -> Self:
        """``body`` as this model, or a ProtocolError from :func:`invalid_body` at ``where``."""
        return validate(cls, body, where)

    def dump(self) -> dict[str, Any]:
        """The JSON body of a :class:`Message` (fields left unset at None are omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- describe -------------------------------------------------------------------------------
class DeclaredBody(Body):
    """A declared column type (the job's ``data.columns``): a date may carry its format."""

    type: ColumnType
    format: str | None = None


class DescribeTask(Body):
    label: str
    id: str | None = None
    columns: dict[str, DeclaredBody] = Field(default_factory=dict)


class ColumnBody(Body):
    name: str
    type: ColumnType
    format: str | None = None


class SchemaBody(Body):
    """A table schema: column names and types, never values."""

    label: str
    columns: tuple[ColumnBody, ...]


class TabularDescription(Body):
    kind: Literal["tabular"]
    table: SchemaBody = Field(alias="schema")
    rows: Count


class ImageDescription(Body):
    kind: Literal["image"]
    shape: tuple[Positive, ...] = Field(min_length=1, max_length=3)
    rows: Count
    classes: tuple[str, ...] = Field(min_length=2)


DescribeReply = Annotated[TabularDescription | ImageDescription, Field(discriminator="kind")]


# -- stats ----------------------------------------------------------------------------------
class StatsTask(Body):
    table: SchemaBody = Field(alias="schema")


class NumberStats(Body):
    type: Literal["number"]
    count: Count
    sum: float
    sum_sq: NonNegative
    m2: NonNegative
    missing: Count


class CategoryStats(Body):
    type: Literal["category"]
    counts: dict[str, Count]
    missing: Count


class LocalStats(Body):
    """Summable statistics of one party's rows (fedsilo.data.preprocess.local_stats)."""

    n_rows: Count
    columns: dict[str, Annotated[NumberStats | CategoryStats, Field(discriminator="type")]]
    label_counts: dict[str, Count]


class StatsReply(Body):
    stats: LocalStats


# -- setup ----------------------------------------------------------------------------------
class RecordDPProposal(Body):
    noise_multiplier: NonNegative | None
    target_epsilon: NonNegative | None
    max_grad_norm: NonNegative
    accounting: str
    delta: Probability
    rounds: Positive
    batch_size: Positive
    epochs: Positive


class SetupTask(Body):
    plan: dict[str, Any] | None
    classes: tuple[str, ...] = Field(min_length=2)
    model: dict[str, Any]
    holdout_fraction: float = Field(gt=0.0, lt=1.0)
    seed: int
    record_dp: RecordDPProposal | None = None
    reproducible_noise: bool = False  # simulation only: a deployed party refuses it


class RecordDPPlan(Body):
    noise_multiplier: NonNegative
    max_grad_norm: NonNegative
    delta: Probability
    accounting: str
    target_epsilon: NonNegative | None


class SetupReply(Body):
    train_examples: Positive
    holdout_examples: Positive
    label_counts: tuple[Count, ...]
    record_dp: RecordDPPlan | None = None


# -- fit ------------------------------------------------------------------------------------
class TrainingBody(Body):
    """fedsilo.training.LocalTrainConfig on the wire."""

    epochs: Positive
    batch_size: Positive
    learning_rate: NonNegative
    optimizer: str
    momentum: NonNegative
    weight_decay: NonNegative
    proximal_mu: NonNegative


class ClientDpTask(Body):
    """A party's share of client DP (fedsilo.privacy.dp_fedavg ``party_task``)."""

    clip_norm: float = Field(gt=0.0)
    noise_std: NonNegative
    bit_noise_std: NonNegative


class SecaggFit(Body):
    """Secure aggregation's masking step: quantization and the party's encrypted shares
    (base64 ciphertexts, decoded by fedsilo.privacy.secagg.wire)."""

    clip_range: float = Field(gt=0.0)
    bits: Positive
    max_parties: Positive
    quant_seed: int
    shares: dict[str, str]


class PrivateOptions(Body):
    """How a FIT reply leaves private: clipped and noised (client DP), weighted, masked."""

    client_dp: ClientDpTask | None = None
    weight_scale: float | None = Field(default=None, gt=0.0)
    secagg: SecaggFit | None = None


class FitTask(Body):
    training: TrainingBody
    seed: int
    private: PrivateOptions | None = None  # secure aggregation / client DP options
    attempt: Count | None = None  # secure aggregation: which attempt of the round


class AttemptOf(Body):
    """The attempt a secure-aggregation step belongs to (the step's own fields are read by
    fedsilo.privacy.secagg.wire)."""

    model_config = ConfigDict(extra="ignore")

    attempt: Count


class RoundSpend(Body):
    noise_multiplier: NonNegative
    sample_rate: Probability
    steps: Count


class RecordSpend(Body):
    """A party's own record-level DP spend after a round (fedsilo.privacy.guard)."""

    level: Literal["record"]
    epsilon: NonNegative
    delta: Probability
    accounting: str
    noise_multiplier: NonNegative
    max_grad_norm: NonNegative
    sample_rate: Probability
    steps: Count
    round_spend: RoundSpend
    max_epsilon: NonNegative | None
    ledger_epsilon: NonNegative | None = None  # the party's total over every job
    ledger_delta: Probability | None = None


class FitReply(Body):
    num_examples: Positive
    train_loss: NonNegative
    privacy: RecordSpend | None = None


class ClippedFitReply(Body):
    """Client DP with a trusted coordinator: the clipped update rides in the arrays."""

    clipped_bit: float
    train_loss: NonNegative
    privacy: RecordSpend | None = None


class MaskedFitReply(Body):
    """Secure aggregation: only the masked vector (array ``masked``) leaves the party."""

    privacy: RecordSpend | None = None


# -- evaluate -------------------------------------------------------------------------------
class EvaluateTask(Body):
    pass


class EvalStatsBody(Body):
    """fedsilo.training.EvalStats on the wire: summable, checked against the job's classes."""

    loss_sum: NonNegative
    confusion: tuple[tuple[Count, ...], ...]
    score_hist: tuple[tuple[Count, ...], ...] | None = None


class Metrics(Body):
    loss: NonNegative
    accuracy: Probability
    precision: Probability
    recall: Probability
    f1: Probability
    auc: Probability | None = None


class EvaluateReply(Body):
    num_examples: Positive
    metrics: Metrics
    stats: EvalStatsBody


# -- parsing --------------------------------------------------------------------------------
B = TypeVar("B")


def invalid_body(exc: ValidationError, where: str) -> ProtocolError:
    """The one wording of a refused body: ``<where> field '<field>' is invalid: <why>``."""
    errors = exc.errors()
    field = ".".join(str(part) for part in errors[0]["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProtocolError(f"{where} field '{field}' is invalid: {errors[0]['msg']}{more}")


@cache
def _adapter(schema: Hashable) -> TypeAdapter[Any]:
    """One validator per schema for the process (building one costs ~100x a validation)."""
    return TypeAdapter(cast(type[Any], schema))


def validate(schema: type[B] | TypeAdapter[B], body: object, where: str) -> B:
    """``body`` as ``schema``, or a :class:`ProtocolError` from :func:`invalid_body` at
    ``where``: the one way every body is validated."""
    adapter: TypeAdapter[B] = (
        schema if isinstance(schema, TypeAdapter) else _adapter(cast(Hashable, schema))
    )
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise invalid_body(exc, where) from None


def parse_body(schema: type[B] | TypeAdapter[B], msg: Message, *, where: str = "") -> B:
    """``msg``'s body as ``schema``, or a :class:`ProtocolError` naming sender, round, field.

    ``where`` (e.g. "party 'bank-a'") replaces the sender in the message, for the party side.
    """
    return validate(schema, msg.body, origin(msg, where))
