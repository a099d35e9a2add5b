"""Analytics job configuration: TOML in, validated pydantic models out.

An analytics job names the parties and their files (or a built-in tabular dataset split into
simulated parties), the one table every party holds, its public schema, and the privacy
settings. The schema is *public*: column types, the category list of each categorical column
(the only columns GROUP BY accepts) and the clipping bounds of each numeric column (values are
clipped to ``[lower, upper]`` before any sum, so one row's contribution is bounded)::

    kind = "analytics"
    name = "banks"
    table = "transactions"
    min_group_size = 10

    [[parties]]
    name = "bank-a"
    path = "data/bank_a.csv"
    max_epsilon = 5.0

    [columns.region]
    type = "category"
    categories = ["north", "south", "east", "west"]

    [columns.amount]
    type = "number"
    lower = 0
    upper = 5000

    [privacy]
    mechanism = "gaussian"   # gaussian | laplace | none
    epsilon = 1.0            # per query (or noise_multiplier = ..., gaussian only)
    delta = 1e-6
    max_epsilon = 10.0       # default budget of a party that declares none

    [privacy.secure_aggregation]   # optional: the coordinator learns only the sums
    enabled = true
    variant = "secagg+"      # secagg | secagg+

    [policy]                 # simulation only: each simulated party's own query policy
    allow_exact = false      # mechanism = "none" is refused unless this is true
    max_query_epsilon = 2.0

In simulation the job file stands in for each party's own configuration: ``max_epsilon`` (per
party or the ``[privacy]`` default) is the simulated party's budget and ``[policy]`` its
:class:`QueryPolicy`. A deployed party takes neither from the job: its budget and policy are in
its own ``party.toml`` (``[privacy]``, ``[analytics.policy]``).

A column has the name it has in the data, spaces and all: ``[columns."mean radius"]`` in
TOML, ``AVG("mean radius")`` (a double-quoted identifier, ``""`` for a ``"`` inside) in SQL.
Every SQL statement a party runs quotes the names it holds (:mod:`fedsilo.analytics.local`,
:mod:`fedsilo.data.typed`), so a name is never read as SQL.

Every error names the key, e.g. ``ConfigError: job.toml: key 'columns.amount': number column
needs lower < upper (got lower=5, upper=1)``.
"""

from __future__ import annotations

import enum
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from fedsilo.config import SecAggVariant
from fedsilo.config_base import Strict, refuse_keys
from fedsilo.data.tabular import ColumnDeclaration, ColumnType
from fedsilo.data.typed import OTHER, Declared
from fedsilo.jobs import load_as, parse_as, resolve
from fedsilo.privacy.accounting import AccountingMethod

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # the table's name
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"


class ColumnKind(enum.Enum):
    NUMBER = "number"
    CATEGORY = "category"
    BOOLEAN = "boolean"  # WHERE flag = TRUE / FALSE (docs/data.md: accepted spellings)
    DATE = "date"  # WHERE day >= '2025-01-31' (ISO literal); the file's format in `format`


class MissingHandling(enum.Enum):
    """A column's missing values: ``reject`` (the query fails with their count) or ``skip``
    (read as SQL NULL: ``COUNT(c)``, ``SUM``, ``AVG``... skip them, the row is in no group)."""

    REJECT = "reject"
    SKIP = "skip"


class Mechanism(enum.Enum):
    NONE = "none"
    GAUSSIAN = "gaussian"
    LAPLACE = "laplace"


class ColumnSpec(Strict):
    """One public column: a clipped number, or a category with its public values."""

    type: ColumnKind
    lower: float | None = None
    upper: float | None = None
    categories: list[str | int] | None = None
    missing: MissingHandling = MissingHandling.REJECT
    other: bool = False
    format: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.format is not None and self.type is not ColumnKind.DATE:
            raise ValueError("only a date column takes a 'format'")
        if self.type in (ColumnKind.BOOLEAN, ColumnKind.DATE):
            if self.lower is not None or self.upper is not None or self.categories or self.other:
                raise ValueError(
                    f"a {self.type.value} column takes no bounds, categories or 'other' (it is "
                    "used in WHERE filters)"
                )
            ColumnDeclaration(type=ColumnType(self.type.value), format=self.format)
            return self
        if self.type is ColumnKind.NUMBER:
            if self.lower is None or self.upper is None:
                raise ValueError(
                    "number column needs clipping bounds 'lower' and 'upper' (DP needs bounded "
                    "contributions)"
                )
            if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
                raise ValueError("clipping bounds must be finite numbers")
            if not self.lower < self.upper:
                raise ValueError(
                    f"number column needs lower < upper (got lower={self.lower}, upper={self.upper})"
                )
            if self.categories is not None:
                raise ValueError("a number column has no 'categories'; use type = 'category'")
            if self.other:
                raise ValueError("'other' applies to category columns only")
        else:
            if not self.categories:
                raise ValueError("category column needs its public list 'categories'")
            if len({str(c) for c in self.categories}) != len(self.categories):
                raise ValueError("'categories' has duplicate values")
            if self.lower is not None or self.upper is not None:
                raise ValueError("a category column has no clipping bounds")
            if self.other and (
                OTHER in [str(c) for c in self.categories]
                or all(isinstance(c, int) for c in self.categories)
            ):
                raise ValueError(
                    f"'other' adds the group {OTHER!r} to text categories: it must not be a "
                    "declared category, and integer categories take no 'other'"
                )
        return self

    @property
    def group_values(self) -> list[str | int]:
        """The public groups of a category column: its categories, then ``other`` if set."""
        return [*(self.categories or []), *([OTHER] if self.other else [])]

    def declared(self) -> Declared:
        """The column as the typed reader (:mod:`fedsilo.data.typed`) takes it."""
        return Declared(
            ColumnType(self.type.value),
            tuple(self.categories or ()),
            skip_missing=self.missing is MissingHandling.SKIP,
            other=self.other,
            format=self.format,
        )

    @property
    def center(self) -> float:
        assert self.lower is not None and self.upper is not None
        return (self.lower + self.upper) / 2

    @property
    def half_range(self) -> float:
        assert self.lower is not None and self.upper is not None
        return (self.upper - self.lower) / 2


class AnalyticsParty(Strict):
    """One organization: its file and its privacy budget."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    path: Path | None = None
    max_epsilon: float | None = Field(default=None, gt=0)


class BuiltinSource(Strict):
    """A built-in tabular dataset split into ``num_parties`` simulated parties (seeded)."""

    dataset: str
    num_parties: int = Field(default=3, ge=1, le=1000)


class SecureAggregationSettings(Strict):
    """``[privacy.secure_aggregation]``: the coordinator learns only the sum of the statistics.

    ``variant`` and ``threshold`` / ``neighbours`` mean what they mean for training
    (``fedsilo.config.SecureAggregationConfig``, docs/privacy.md). There is no ``clip_range`` or
    ``bits``: statistics are encoded in fixed point in the ring Z_{2^64}, scaled by each
    statistic's public per-row bound, with ``max_rows`` (a public bound on the rows of one
    group across all parties) fixing the fractional bits (:mod:`fedsilo.analytics.fixed_point`).
    """

    enabled: bool = False
    variant: SecAggVariant = SecAggVariant.SECAGG
    threshold: float = Field(default=0.5, gt=0, le=1)
    neighbours: int | None = Field(default=None, ge=2)
    max_rows: int = Field(default=10**9, ge=1, le=2**40)

    @model_validator(mode="before")
    @classmethod
    def _no_training_keys(cls, raw: Any) -> Any:
        training = (
            "is a training setting; analytics encodes its statistics in a 64-bit ring from "
            "the declared column bounds: remove it (set 'max_rows' to bound the rows of one "
            "group across all parties instead)"
        )
        return refuse_keys(raw, {"clip_range": training, "bits": training})

    @model_validator(mode="after")
    def _degree(self) -> SecureAggregationSettings:
        if self.neighbours is not None and self.variant is not SecAggVariant.SECAGG_PLUS:
            raise ValueError(
                "'neighbours' applies to variant = 'secagg+' only (plain secagg pairs every "
                "party with every other)"
            )
        return self


class PrivacySettings(Strict):
    """Central DP on every released statistic; ``epsilon`` is the cost of one query."""

    mechanism: Mechanism = Mechanism.GAUSSIAN
    epsilon: float | None = Field(default=None, gt=0)
    noise_multiplier: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-6, gt=0, lt=1)
    accounting: AccountingMethod = AccountingMethod.RDP
    max_epsilon: float = Field(default=10.0, gt=0)
    secure_aggregation: SecureAggregationSettings = Field(default_factory=SecureAggregationSettings)

    @model_validator(mode="after")
    def _one_scale(self) -> PrivacySettings:
        m = self.mechanism
        if m is Mechanism.NONE:
            if self.epsilon is not None or self.noise_multiplier is not None:
                raise ValueError("mechanism 'none' takes neither epsilon nor noise_multiplier")
        elif m is Mechanism.LAPLACE:
            if self.epsilon is None or self.noise_multiplier is not None:
                raise ValueError("mechanism 'laplace' needs 'epsilon' (and no noise_multiplier)")
        elif (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("mechanism 'gaussian' needs exactly one of epsilon, noise_multiplier")
        return self


class QueryPolicy(Strict):
    """A party's own rules for the queries it answers (``[analytics.policy]`` in party.toml).

    Checked by the party on every query, whatever the coordinator's job says; a query outside
    them is refused with a :class:`~fedsilo.errors.RefusedError` naming the rule and where it is
    set (:meth:`setting`).
    """

    SECTION: ClassVar[str] = "[analytics.policy]"  # where this policy is read from
    FILE: ClassVar[str] = "its party.toml"

    mechanisms: list[Mechanism] = Field(
        default_factory=lambda: [Mechanism.GAUSSIAN, Mechanism.LAPLACE]
    )
    max_query_epsilon: float | None = Field(default=None, gt=0)
    allow_exact: bool = False
    min_group_size: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _noisy_only(self) -> QueryPolicy:
        if Mechanism.NONE in self.mechanisms:
            raise ValueError(
                "'mechanisms' lists noisy mechanisms (gaussian, laplace); exact answers "
                "(mechanism 'none') are allowed by allow_exact = true"
            )
        return self

    def setting(self, key: str) -> str:
        """Where ``key`` is set, for a refusal: ``[analytics.policy] min_group_size in its
        party.toml``."""
        return f"{self.SECTION} {key} in {self.FILE}"


class JobQueryPolicy(QueryPolicy):
    """A simulation job's ``[policy]``: every simulated party's :class:`QueryPolicy`, so its
    refusals name the job file's ``[policy]`` (the setting the user can change), not party.toml.
    """

    SECTION: ClassVar[str] = "[policy]"
    FILE: ClassVar[str] = "the job file"


class AnalyticsJob(Strict):
    """A federated analytics job (``kind = "analytics"``): one table, its public schema, DP."""

    kind: Literal["analytics"] = "analytics"
    name: str = Field(default="analytics", pattern=NAME_PATTERN)
    table: str = Field(pattern=IDENT_PATTERN)
    columns: dict[str, ColumnSpec]
    parties: list[AnalyticsParty] = Field(default_factory=list)
    data: BuiltinSource | None = None
    privacy: PrivacySettings  # required: say mechanism = 'none' to answer without DP
    min_group_size: float = Field(default=0, ge=0)
    seed: int | None = None
    timeout_s: float = Field(default=600, gt=0)
    policy: JobQueryPolicy = Field(default_factory=JobQueryPolicy)  # simulation: parties' policy

    @model_validator(mode="after")
    def _sources(self) -> AnalyticsJob:
        if not self.columns:
            raise ValueError("declare the table's columns under [columns.<name>]")
        for col in self.columns:
            if not col or re.search(CONTROL_CHARACTERS, col):
                raise ValueError(
                    f"column name {col!r} must be a non-empty name without control characters "
                    "(newline, tab, ...); any other name the data has is fine"
                )
        names = [p.name for p in self.parties]
        if len(set(names)) != len(names):
            raise ValueError(f"party names must be unique, got {names}")
        with_files = [p.name for p in self.parties if p.path is not None]
        if self.data is None:
            if not self.parties or len(with_files) != len(self.parties):
                raise ValueError(
                    "give every [[parties]] entry a 'path', or use [data] dataset = '...' with "
                    "num_parties for a built-in dataset"
                )
        elif with_files:
            raise ValueError("[data] dataset and [[parties]] paths are exclusive: choose one")
        return self

    def with_base_dir(self, base_dir: Path) -> AnalyticsJob:
        """Party files relative to ``base_dir`` (the job file's directory) made absolute."""
        parties = [p.model_copy(update={"path": resolve(p.path, base_dir)}) for p in self.parties]
        return self.model_copy(update={"parties": parties})

    def party_names(self) -> list[str]:
        if self.data is not None:
            return [f"party-{i}" for i in range(self.data.num_parties)]
        return [p.name for p in self.parties]

    def budget(self, party: str) -> float:
        """The party's declared maximum epsilon, else the job default."""
        for p in self.parties:
            if p.name == party and p.max_epsilon is not None:
                return p.max_epsilon
        return self.privacy.max_epsilon


def parse_analytics_job(
    raw: dict[str, Any], *, source: str, base_dir: Path | None = None
) -> AnalyticsJob:
    """Validate an analytics job dict (``kind`` may be left out)."""
    return parse_as(AnalyticsJob, raw, source=source, base_dir=base_dir)


def load_analytics_job(path: str | Path) -> AnalyticsJob:
    return load_as(AnalyticsJob, path)
