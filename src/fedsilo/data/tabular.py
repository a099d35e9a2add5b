"""A party's table schema: column types, the shared schema, checking parties agree.

In horizontal federated learning every party holds rows with the same columns in its own
CSV or Parquet file. Before any training the parties must agree on the *schema*: which
feature columns there are and what type each has. This module holds that vocabulary
(:class:`ColumnType`, :class:`ColumnSchema`, :class:`TableSchema`) and checks on the
coordinator that all parties' schemas agree (:func:`check_schemas`), failing *before
training* with one :class:`~fedsilo.errors.SchemaError` listing every disagreement, each
naming the party and the column. Reading a file and inferring a party's schema is
:mod:`fedsilo.data.typed`'s job (the one reader).

What crosses to the coordinator is :meth:`TableSchema.to_json`: column names, types (and a
date column's declared format), never a value. Row numbers in messages are 1-based data rows:
row 1 is the first row after a CSV's header.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from fedsilo.errors import ConfigError, DataError, ProtocolError, SchemaError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
_MAX_LISTED = 20

_K = TypeVar("_K")
_V = TypeVar("_V")


class ColumnType(enum.Enum):
    """A declared column type (docs/data.md lists what each accepts).

    Training encodes ``number``, ``boolean`` (0/1) and ``date`` (days since 1970-01-01) as
    one standardized number, ``category`` one-hot (:attr:`encoded`).
    """

    NUMBER = "number"
    CATEGORY = "category"
    BOOLEAN = "boolean"
    DATE = "date"

    @property
    def encoded(self) -> ColumnType:
        """How training encodes the column: ``NUMBER`` or ``CATEGORY``."""
        return ColumnType.CATEGORY if self is ColumnType.CATEGORY else ColumnType.NUMBER


class MissingPolicy(enum.Enum):
    """What happens to missing feature values (the job's ``data.missing``)."""

    REJECT = "reject"
    """Fail before training, naming every party and column with missing values."""
    MEAN = "mean"
    """Numbers: the federated mean. Categories: the federated most frequent value."""
    CONSTANT = "constant"
    """Numbers: ``0.0``. Categories: the value ``"missing"``."""


@dataclass(frozen=True)
class ColumnSchema:
    """One feature column: its name, type and (dates only) declared strftime format."""

    name: str
    type: ColumnType
    format: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.type is not ColumnType.DATE:
            raise SchemaError(f"column {self.name!r}: only a date column takes a format")


class ColumnDeclaration(BaseModel):
    """A column's declared type in a job (``data.columns``) and on the wire (DESCRIBE).

    Written as a type name (``age = "number"``) or a table with a date's strftime format
    (``visit = { type = "date", format = "%d/%m/%Y" }``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, raw: Any) -> Any:
        return {"type": raw} if isinstance(raw, str | ColumnType) else raw

    @model_validator(mode="after")
    def _format_for_dates(self) -> ColumnDeclaration:
        if self.format is not None and self.type is not ColumnType.DATE:
            raise ValueError("only a date column takes a 'format'")
        if self.format is not None and "%" not in self.format:
            raise ValueError(
                f"date format {self.format!r} has no strftime code; write e.g. '%d/%m/%Y'"
            )
        return self

    def column(self, name: str) -> ColumnSchema:
        return ColumnSchema(name, self.type, self.format)


@dataclass(frozen=True)
class TableSchema:
    """The feature columns, in order, and the label column's name.

    The label and any id column are not among ``columns``.
    """

    columns: tuple[ColumnSchema, ...]
    label: str

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise SchemaError(f"schema lists column(s) {_quoted(dups)} more than once")
        if self.label in names:
            raise SchemaError(f"schema lists the label column {self.label!r} as a feature")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature column names in order."""
        return tuple(c.name for c in self.columns)

    def of_type(self, kind: ColumnType) -> tuple[str, ...]:
        """Names of the feature columns training encodes as ``kind`` (NUMBER or CATEGORY)."""
        return tuple(c.name for c in self.columns if c.type.encoded is kind)

    def type_of(self, name: str) -> ColumnType:
        for c in self.columns:
            if c.name == name:
                return c.type
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Names and types only: safe to send to the coordinator."""
        return {
            "label": self.label,
            "columns": [
                {"name": c.name, "type": c.type.value}
                | ({} if c.format is None else {"format": c.format})
                for c in self.columns
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableSchema:
        """Inverse of :meth:`to_json`; a malformed schema raises ProtocolError."""
        try:
            label = data["label"]
            raw = data["columns"]
            if not isinstance(label, str) or not isinstance(raw, list):
                raise TypeError("'label' must be text and 'columns' a list")
            columns = []
            for item in raw:
                name = item["name"]
                if not isinstance(name, str):
                    raise TypeError(f"column name {name!r} is not text")
                fmt = item.get("format")
                if fmt is not None and not isinstance(fmt, str):
                    raise TypeError(f"column {name!r} format {fmt!r} is not text")
                columns.append(ColumnSchema(name, ColumnType(item["type"]), fmt))
            return cls(tuple(columns), label)
        except (KeyError, TypeError, ValueError, SchemaError) as exc:
            raise ProtocolError(f"malformed table schema: {exc}") from None


# -- DataFrames from Python ---------------------------------------------------------------


def read_frame(frame: object, *, party: str) -> pd.DataFrame:
    """A party's rows given as a pandas DataFrame (``simulate(job, data={party: df})``),
    checked as a file's rows are (:func:`fedsilo.data.typed.read_raw`); the caller's frame is
    not changed.

    Anything but a DataFrame raises :class:`~fedsilo.errors.ConfigError`; an empty frame (no
    columns) or duplicate column names raise DataError naming the party.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"data[{party!r}] is a {type(frame).__name__}, expected a pandas DataFrame of the "
            "party's rows (one column per feature, plus the label)"
        )
    source = frame_source(party)
    if len(frame.columns) == 0:
        raise DataError(f"{whose(party)}: {source} has no columns")
    return _as_read(frame.reset_index(drop=True), party=party, source=source)


def frame_source(party: str) -> str:
    """How messages name a party's DataFrame (rows are numbered from 1, as in a file)."""
    return f"DataFrame data[{party!r}]"


def check_frame_parties(frames: Mapping[str, object], parties: list[str], *, job: str) -> None:
    """ConfigError if a DataFrame is given for a name that is not one of the job's parties."""
    unknown = sorted(set(frames) - set(parties))
    if unknown:
        listed = ", ".join(repr(p) for p in parties) or "none (it reads a dataset or one file)"
        raise ConfigError(
            f"data= gives DataFrames for {', '.join(repr(u) for u in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a party of job {job!r}; its parties: "
            f"{listed}. Name each DataFrame after a [[parties]] entry."
        )


def _as_read(df: pd.DataFrame, *, party: str, source: str) -> pd.DataFrame:
    check_unique_columns(df, party=party, source=source)
    if not all(isinstance(c, str) for c in df.columns):
        df.columns = pd.Index([str(c) for c in df.columns])
    return df


# -- column access shared with preprocessing ----------------------------------------------


def check_unique_columns(columns: pd.DataFrame | Sequence[str], *, party: str, source: str) -> None:
    """DataError if a frame (or a header) has duplicate column names."""
    names = [str(c) for c in (columns.columns if isinstance(columns, pd.DataFrame) else columns)]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise DataError(
            f"{whose(party)}: {source} has duplicate column name(s) {_quoted(dups)}. "
            "Give every column a distinct name."
        )


def texts_of(series: pd.Series) -> tuple[npt.NDArray[np.int64], list[str]]:
    """A category column as (codes, texts): ``codes[i]`` indexes ``texts``, -1 is missing."""
    raw_codes, uniques = pd.factorize(series, use_na_sentinel=True)
    texts = [str(v) for v in uniques]
    return np.asarray(raw_codes, dtype=np.int64), texts


# -- agreement across parties -------------------------------------------------------------


def check_schemas(schemas: Mapping[str, TableSchema]) -> TableSchema:
    """The one schema all parties share, or SchemaError listing every disagreement.

    Parties must have the same label, the same feature columns and the same types; column
    order may differ. The shared schema uses the first party's column order (the mapping's
    iteration order). When parties disagree, the majority decides what is "expected" (on a
    tie, the side the first party is on), so the message names the odd ones out.
    """
    if not schemas:
        raise DataError("no party schemas to check: no party described its data")
    parties = list(schemas)
    first = schemas[parties[0]]
    problems: list[str] = []

    labels = {p: s.label for p, s in schemas.items()}
    expected_label = _majority(parties, labels)
    for p in parties:
        if labels[p] != expected_label:
            holders = [q for q in parties if labels[q] == expected_label]
            problems.append(
                f"party {p!r} has label column {labels[p]!r}, {_parties(holders)} "
                f"{_have(holders)} {expected_label!r}"
            )

    column_sets = {p: set(s.names) for p, s in schemas.items()}
    all_columns: list[str] = []
    for p in parties:
        all_columns.extend(c for c in schemas[p].names if c not in all_columns)
    for column in all_columns:
        holders = [p for p in parties if column in column_sets[p]]
        lacking = [p for p in parties if column not in column_sets[p]]
        if not lacking:
            continue
        expected = 2 * len(holders) > len(parties) or (
            2 * len(holders) == len(parties) and parties[0] in holders
        )
        if expected:
            problems.extend(
                f"party {p!r} lacks column {column!r} that {_parties(holders)} {_have(holders)}"
                for p in lacking
            )
        else:
            problems.extend(f"party {p!r} has extra column {column!r}" for p in holders)

    for column in all_columns:
        types = {p: schemas[p].type_of(column) for p in parties if column in column_sets[p]}
        expected_type = _majority(list(types), types)
        agreeing = [p for p, t in types.items() if t is expected_type]
        for p, t in types.items():
            if t is not expected_type:
                problems.append(
                    f"party {p!r} column {column!r} is {t.value}, {_names(agreeing)} "
                    f"{_have(agreeing)} {expected_type.value}"
                )

    if problems:
        raise SchemaError(
            f"parties' columns disagree ({len(problems)} problem(s)):\n  - "
            + "\n  - ".join(problems)
            + "\nFix the files so every party has the same columns, or declare column types "
            'in the job TOML (e.g. data.columns.age = "number").'
        )
    return first


def _majority(order: Sequence[_K], values: Mapping[_K, _V]) -> _V:
    """The most common value; a tie goes to the value seen first in ``order``."""
    counts: dict[_V, int] = {}
    for key in order:
        counts[values[key]] = counts.get(values[key], 0) + 1
    best = max(counts.values())
    return next(values[k] for k in order if counts[values[k]] == best)


def _parties(names: Sequence[str]) -> str:
    return ("party " if len(names) == 1 else "parties ") + _names(names)


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _have(names: Sequence[str]) -> str:
    return "has" if len(names) == 1 else "have"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


SCORED = "(input)"
"""The ``party`` of rows given to a trained model to score: no party's name can look so."""


def whose(party: str) -> str:
    """How a message names the owner of the rows it is about: ``party 'bank-a'``, or
    ``input`` for rows being scored (:data:`SCORED`)."""
    return "input" if party == SCORED else f"party {party!r}"


def listing(names: Sequence[str]) -> str:
    """Up to 20 quoted names, then how many more."""
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f" and {len(names) - _MAX_LISTED} more"
    return shown or "(none)"
