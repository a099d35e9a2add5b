"""A party's table: reading its file, inferring its schema, checking parties agree.

In horizontal federated learning every party holds rows with the same columns in its own
CSV or Parquet file. Before any training the parties must agree on the *schema*: which
feature columns there are, and whether each is a number (standardized) or a category
(one-hot encoded). This module

* reads one party's file (:func:`read_party_table`);
* infers the party's :class:`TableSchema` (:func:`infer_schema`), with the job's declared
  column types (``data.columns`` in the job TOML) taking precedence over inference;
* checks on the coordinator that all parties' schemas agree (:func:`check_schemas`) and
  fails *before training* with one :class:`~fedsilo.errors.SchemaError` listing every
  disagreement, each naming the party and the column.

What crosses to the coordinator is :meth:`TableSchema.to_json` (also :func:`describe_table`):
column names and types only, never a value.

Conventions, decided once here and used by :mod:`fedsilo.data.preprocess` too:

* Inference: numeric dtypes (integers, floats) are ``number``; text is ``category``;
  **booleans are** ``category`` (a flag is a two-valued category, and a boolean CSV column
  with an empty field is read as text, so ``number`` would flip between parties); an
  ``object`` column whose non-missing values are all numbers is ``number``. Date/time,
  timedelta and complex columns are rejected unless declared ``category``.
* Category values and labels are compared as text via :func:`value_text`: text stays as it
  is; integers, and floats with an integral value, become their integer digits (``1``,
  ``1.0``, ``np.int64(1)`` and ``"1"`` are all ``"1"``, since a CSV integer column with an
  empty field is read as floats); other floats use their shortest round-trip form
  (``0.5`` is ``"0.5"``); booleans are ``"True"``/``"False"``. Text spelled like a
  float (``"1.0"``) stays as written.
* Missing values in CSV files are pandas' defaults: an empty field, ``NA``, ``N/A``,
  ``NaN``, ``nan``, ``null``, ``NULL``, ``None`` and the like. A category value spelled
  like one of these (``NA`` for Namibia) is read as missing.
* Row numbers in messages are 1-based data rows: row 1 is the first row after a CSV's header.
* Messages never quote a numeric cell; they name party, file, column and row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.errors import ConfigError, DataError, ProtocolError, SchemaError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
_MAX_LISTED = 20

_K = TypeVar("_K")
_V = TypeVar("_V")


class ColumnType(enum.Enum):
    """How a feature column is encoded: standardized number or one-hot category."""

    NUMBER = "number"
    CATEGORY = "category"


@dataclass(frozen=True)
class ColumnSchema:
    """One feature column: its name and type."""

    name: str
    type: ColumnType


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
        """Names of the feature columns of one type, in schema order."""
        return tuple(c.name for c in self.columns if c.type is kind)

    def type_of(self, name: str) -> ColumnType:
        for c in self.columns:
            if c.name == name:
                return c.type
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Names and types only: safe to send to the coordinator."""
        return {
            "label": self.label,
            "columns": [{"name": c.name, "type": c.type.value} for c in self.columns],
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
                columns.append(ColumnSchema(name, ColumnType(item["type"])))
            return cls(tuple(columns), label)
        except (KeyError, TypeError, ValueError, SchemaError) as exc:
            raise ProtocolError(f"malformed table schema: {exc}") from None


# -- reading ------------------------------------------------------------------------------


def read_party_table(path: Path, *, party: str) -> pd.DataFrame:
    """Read one party's ``.csv`` or ``.parquet`` (``.pq``) file, chosen by suffix.

    A missing file, an unknown suffix, an unreadable or empty file, or duplicate column
    names raise :class:`~fedsilo.errors.DataError` naming the party and the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(
            f"party {party!r}: cannot read {path}: unknown file type {path.suffix or '(none)'!r}. "
            "Use a .csv or .parquet file."
        )
    if not path.exists():
        raise DataError(
            f"party {party!r}: data file {path} does not exist. Check the party's path in "
            "the job config (it is relative to the directory fedsilo runs in)."
        )
    if not path.is_file():
        raise DataError(f"party {party!r}: data path {path} is not a file. Point it at a file.")
    try:
        if suffix in CSV_SUFFIXES:
            df = pd.read_csv(path, low_memory=False)
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"party {party!r}: {path} is empty (no header row). Write the column names on "
            "the first line."
        ) from None
    except Exception as exc:  # parsers raise many types; all mean "cannot use this file"
        kind = "CSV" if suffix in CSV_SUFFIXES else "Parquet"
        raise DataError(
            f"party {party!r}: cannot read {path} as {kind}: {type(exc).__name__}: {exc}. "
            f"Check that the file is valid {kind}."
        ) from None
    return _as_read(df, party=party, source=str(path))


def read_frame(frame: object, *, party: str) -> pd.DataFrame:
    """A party's rows given as a pandas DataFrame (``simulate(job, data={party: df})``),
    checked as a file's rows are (:func:`read_party_table`); the caller's frame is not changed.

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
        raise DataError(f"party {party!r}: {source} has no columns")
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


# -- schema inference ---------------------------------------------------------------------


def value_text(value: object) -> str:
    """The text a category value or label is compared by (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if f.is_integer() and abs(f) < 2.0**63:
            return str(int(f))
        return str(value)
    return str(value)


def infer_schema(
    df: pd.DataFrame,
    *,
    label: str,
    id_column: str | None = None,
    declared: Mapping[str, ColumnType] | None = None,
    party: str,
    source: str,
) -> TableSchema:
    """The party's schema: every column but the label and id column, with its type.

    ``declared`` types (the job's ``data.columns``) win over inference; a column declared
    ``number`` that holds text raises SchemaError naming the first offending row. Column
    order is the file's.
    """
    check_unique_columns(df, party=party, source=source)
    found = [str(c) for c in df.columns]
    if label not in found:
        raise DataError(
            f"party {party!r}: label column {label!r} (data.label) is not in {source}; "
            f"columns found: {_listing(found)}. Set data.label to the column holding the "
            "class of each row."
        )
    if id_column is not None and id_column not in found:
        raise DataError(
            f"party {party!r}: id column {id_column!r} (data.id) is not in {source}; columns "
            f"found: {_listing(found)}. Fix data.id or remove it."
        )
    if id_column is not None and id_column == label:
        raise ConfigError(f"data.id and data.label both name column {label!r}; they must differ")
    declared = dict(declared or {})
    for name in sorted(declared):
        if name == label:
            raise ConfigError(
                f"data.columns declares the label column {name!r}; the label is always a "
                "class label. Remove it from data.columns."
            )
        if name == id_column:
            raise ConfigError(
                f"data.columns declares the id column {name!r}, which is dropped before "
                "training. Remove it from data.columns."
            )
        if name not in found:
            raise SchemaError(
                f"party {party!r}: data.columns declares column {name!r} but {source} has no "
                f"such column; columns found: {_listing(found)}. Fix the file or the "
                "declaration."
            )
    columns: list[ColumnSchema] = []
    for name in found:
        if name in (label, id_column):
            continue
        series = df[name]
        if name in declared:
            kind = declared[name]
            if kind is ColumnType.NUMBER:
                numbers_of(series, column=name, party=party, source=source)
        else:
            kind = _infer_type(series, column=name, party=party, source=source)
        columns.append(ColumnSchema(name, kind))
    return TableSchema(tuple(columns), label)


def describe_table(
    df: pd.DataFrame,
    *,
    label: str,
    id_column: str | None = None,
    declared: Mapping[str, ColumnType] | None = None,
    party: str,
    source: str,
) -> dict[str, Any]:
    """What a party tells the coordinator about its table: names and types, never values."""
    schema = infer_schema(
        df, label=label, id_column=id_column, declared=declared, party=party, source=source
    )
    return schema.to_json()


def _infer_type(series: pd.Series, *, column: str, party: str, source: str) -> ColumnType:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnType.CATEGORY
    if isinstance(dtype, pd.CategoricalDtype):
        return ColumnType.CATEGORY
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
        or pd.api.types.is_complex_dtype(dtype)
    ):
        raise SchemaError(
            f"party {party!r} column {column!r} holds {dtype} values ({source}), which "
            f"fedsilo cannot encode. Declare it categorical (data.columns.{column} = "
            '"category") or turn it into numeric columns before training.'
        )
    if pd.api.types.is_numeric_dtype(dtype):
        return ColumnType.NUMBER
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
            return ColumnType.NUMBER
    return ColumnType.CATEGORY


# -- column access shared with preprocessing ----------------------------------------------


def check_unique_columns(df: pd.DataFrame, *, party: str, source: str) -> None:
    """DataError if the frame has duplicate column names."""
    dups = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dups:
        raise DataError(
            f"party {party!r}: {source} has duplicate column name(s) {_quoted(dups)}. "
            "Give every column a distinct name."
        )


def numbers_of(
    series: pd.Series, *, column: str, party: str, source: str
) -> npt.NDArray[np.float64]:
    """A number column as float64, missing values as NaN.

    Text that is not a number raises SchemaError naming the first offending row; infinite
    values raise DataError naming the first such row. Booleans count as 0 and 1.
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        values: npt.NDArray[np.float64] = np.asarray(
            series.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64
        )
    else:
        present = series.notna().to_numpy()
        if pd.api.types.is_object_dtype(dtype):
            # to_numeric would read True as 1 and a Timestamp as nanoseconds: only real
            # numbers and text count.
            allowed = np.array(
                [
                    v is None or isinstance(v, str | int | float | np.integer | np.floating)
                    for v in series.to_numpy()
                ],
                dtype=bool,
            )
        else:
            allowed = np.ones(len(series), dtype=bool)
        try:
            converted = pd.to_numeric(series.where(allowed), errors="coerce")
            values = np.asarray(converted, dtype=np.float64)
        except (TypeError, ValueError):
            values = np.full(len(series), np.nan, dtype=np.float64)
        bad = present & (np.isnan(values) | ~allowed)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            count = int(bad.sum())
            more = f" and {count - 1} more row(s)" if count > 1 else ""
            raise SchemaError(
                f"party {party!r} column {column!r} is text, expected number ({source}, row "
                f"{row}{more}). Fix the file or declare the column categorical "
                f'(data.columns.{column} = "category").'
            )
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0]) + 1
        raise DataError(
            f"party {party!r} column {column!r} has an infinite value ({source}, row {row}). "
            "Replace it with a finite number, or leave the cell empty to mark it missing."
        )
    return values


def texts_of(series: pd.Series) -> tuple[npt.NDArray[np.int64], list[str]]:
    """A category column as (codes, texts): ``codes[i]`` indexes ``texts``, -1 is missing.

    Values with the same :func:`value_text` share one code.
    """
    raw_codes, uniques = pd.factorize(series, use_na_sentinel=True)
    texts: list[str] = []
    index: dict[str, int] = {}
    remap = np.empty(len(uniques), dtype=np.int64)
    for i, value in enumerate(uniques):
        text = value_text(value)
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
        remap[i] = index[text]
    codes = np.asarray(raw_codes, dtype=np.int64)
    if not texts:
        return np.full(len(codes), -1, dtype=np.int64), texts
    return np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int64), texts


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


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f" and {len(names) - _MAX_LISTED} more"
    return shown or "(none)"
