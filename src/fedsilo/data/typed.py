"""The one reader of a party's rows: declared (or agreed) types, no type guessed from a file.

Training (:mod:`fedsilo.data.preprocess`), queries (:mod:`fedsilo.analytics.local`) and
vertical jobs (:mod:`fedsilo.vertical.data`) read a party's table here:

* :func:`read_raw` reads a ``.csv`` file with every field as text (DuckDB's ``all_varchar``,
  so no sniffer guesses a type) or a ``.parquet`` file with its own column types;
* :func:`typed_view` (DuckDB) and :func:`typed_frame` (a DataFrame) turn each declared column
  into its declared type with casts written here, after checking every value;
* :func:`infer_schema` gives a training party's :class:`~fedsilo.data.tabular.TableSchema`:
  declared columns keep their type; an undeclared column is ``number`` when the file stores
  numbers (Parquet) or every present value is a number as defined below (CSV), else
  ``category``. Every party applies that one rule to its own text and the coordinator checks
  that the parties agree (:func:`~fedsilo.data.tabular.check_schemas`); the rows are then read
  with the agreed types. Two undeclared text columns are refused instead, because as
  categories their values would reach the coordinator: mostly numbers with a few that are
  not (a malformed number), and more than :data:`MANY_CATEGORIES` distinct values that are
  at least half of its values (an identifier or free text).

What each declared type accepts (docs/data.md says the same, with a table):

* ``number``: a decimal number, optionally signed, with an optional exponent (``146``,
  ``-0.5``, ``1e3``, ``.5``), surrounding spaces ignored. Missing: an empty field, ``NA``,
  ``N/A``, ``NaN``, ``nan``, ``NULL``, ``null``, ``None`` (and NaN/NULL in Parquet). A
  thousands separator (``1,234.50``), a decimal comma (``146,5``), ``inf`` or any other text
  is an error naming party, file, column, first row and count. Parquet numeric types are
  taken as they are; booleans, dates and other types are refused.
* ``boolean``: ``true``/``false``, ``yes``/``no``, ``t``/``f``, ``1``/``0``, in any case,
  surrounding spaces ignored; Parquet booleans. Missing: as for numbers. Anything else is an
  error naming the first row, the count and the spellings found. Training encodes it as 0/1.
* ``date``: with a declared ``format`` (strftime codes, e.g. ``%d/%m/%Y``) exactly that
  format; without one only ISO ``YYYY-MM-DD`` (``03/01/2025`` is ambiguous: an error saying
  to declare a format); Parquet dates (and timestamps at midnight). Missing: as for numbers.
  Training encodes it as days since 1970-01-01.
* ``category`` with text categories: the text exactly as written, case and leading zeros
  kept (``Yes``, ``True``, ``T``, ``03/01/2025``, ``01`` are text, never booleans, dates or
  numbers). Missing: an empty field only (``NA`` may be Namibia). Parquet booleans read as
  ``True``/``False`` (what pandas writes to CSV), other types as their DuckDB text. Without
  declared categories (training), every text is a value.
* ``category`` with integer categories: an integer (``2024``, ``07`` is 7), or a number with an
  integral value (``2024.0``, as pandas writes an integer column with a missing value); a
  fractional value (``2024.5``) is an error. Missing: as for numbers.
* the training label: a category, except that an integral number is its integer digits
  (``1.0`` is class ``1``, as pandas writes an integer label column with a float dtype).

A value outside the declared categories is an error naming party, file, column, the values and
their count, unless the (text) column declares ``other``: such values then form the group
``"other"``.
A missing value is an error with its count unless the column's missing policy is ``skip``
(SQL NULL; training counts them and applies the job's ``data.missing``). Row numbers are
1-based data rows (row 1 follows a CSV's header).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # DuckDB loads when a party's rows are first read (no cost to load a job)
    import duckdb

from fedsilo.data.tabular import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    ColumnSchema,
    ColumnType,
    TableSchema,
    check_unique_columns,
    listing,
    whose,
)
from fedsilo.errors import ConfigError, DataError, MissingValueError, SchemaError

NUMBER_MISSING = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")
BOOLEAN_TRUE = ("true", "t", "yes", "1")
BOOLEAN_FALSE = ("false", "f", "no", "0")
ISO_DATE = "%Y-%m-%d"
OTHER = "other"
_NUMBER_RE = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
_INTEGRAL_RE = r"[+-]?[0-9]+(\.0*)?"
_NUMERIC_TYPES = [
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
]
_MAX_SHOWN = 10
_TOML_BARE_KEY = r"[A-Za-z0-9_-]+"  # a TOML key written without quotes


@dataclass(frozen=True)
class Declared:
    """One declared column: its type, public categories, and what to do with odd values.

    No ``categories`` on a category column means any text is a value (training learns the
    values from every party's counts). ``label`` reads integral numbers as their digits;
    ``format`` is a date column's strftime format (``None``: ISO ``YYYY-MM-DD`` only).
    """

    type: ColumnType
    categories: tuple[str | int, ...] = ()
    skip_missing: bool = False
    other: bool = False
    label: bool = False
    format: str | None = None

    @property
    def integer_categories(self) -> bool:
        return bool(self.categories) and all(isinstance(c, int) for c in self.categories)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(expr: str, values: Sequence[str | int]) -> str:
    return f"{expr} IN ({', '.join(_lit(str(v)) for v in values)})"


def _numeric(source_type: str) -> bool:
    t = source_type.upper()
    return t in _NUMERIC_TYPES or t.startswith("DECIMAL")


@dataclass(frozen=True)
class _Column:
    """SQL over the raw relation: is the value missing, malformed, outside; its typed value."""

    missing: str
    bad: str
    outside: str
    value: str
    shown: str  # the raw text, for messages (category and boolean columns)
    what: str = ""  # what a malformed value is, if not the type's usual wording


@functools.cache
def _engine() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for reading in this process, opened on first use (opening one
    costs ~20 ms; a cursor of it, a connection of its own, costs microseconds). One thread:
    rows keep their order and sums their bits."""
    import duckdb

    return duckdb.connect(config={"threads": 1})


def cursor() -> duckdb.DuckDBPyConnection:
    """A fresh connection (own temp views and registered frames) to the reading database."""
    return _engine().cursor()


def _refuse_type(name: str, spec: Declared, source_type: str, party: str, source: str) -> None:
    raise SchemaError(
        f"{whose(party)} column {name!r} is declared {spec.type.value} but {source} stores it "
        f"as {source_type}. Write {spec.type.value} values (or text holding them) in that "
        "column, or declare its type to match."
    )


def _number(c: str, numeric: bool) -> _Column:
    if numeric:
        v = f"CAST({c} AS DOUBLE)"
        return _Column(
            f"({v} IS NULL OR isnan({v}))", f"isinf({v})", "FALSE", v, "NULL", "is infinite"
        )
    s = f"trim({c})"
    missing = f"({c} IS NULL OR {_in(s, NUMBER_MISSING)})"
    bad = f"(NOT {missing} AND NOT regexp_full_match({s}, {_lit(_NUMBER_RE)}))"
    value = f"(CASE WHEN {missing} OR {bad} THEN NULL ELSE CAST({s} AS DOUBLE) END)"
    return _Column(missing, bad, "FALSE", value, "NULL")


def _boolean(c: str, source_type: str, encode: bool) -> _Column:
    if source_type.upper() == "BOOLEAN":
        value = c
        col = _Column(f"({c} IS NULL)", "FALSE", "FALSE", value, "NULL")
    else:
        t = f"CAST({c} AS VARCHAR)"
        s = f"lower(trim({t}))"
        missing = f"({t} IS NULL OR {_in(f'trim({t})', NUMBER_MISSING)})"
        yes, no = _in(s, BOOLEAN_TRUE), _in(s, BOOLEAN_FALSE)
        bad = f"(NOT {missing} AND NOT {yes} AND NOT {no})"
        value = f"(CASE WHEN {yes} THEN TRUE WHEN {no} THEN FALSE END)"
        col = _Column(missing, bad, "FALSE", value, t)
    if encode:
        return _Column(col.missing, col.bad, col.outside, f"CAST({col.value} AS DOUBLE)", col.shown)
    return col


def _date(c: str, source_type: str, spec: Declared, encode: bool) -> _Column:
    upper = source_type.upper()
    if upper == "DATE":
        col = _Column(f"({c} IS NULL)", "FALSE", "FALSE", c, "NULL")
    elif upper.startswith("TIMESTAMP"):
        d = f"CAST({c} AS DATE)"
        bad = f"(CAST({d} AS TIMESTAMP) <> CAST({c} AS TIMESTAMP))"
        col = _Column(f"({c} IS NULL)", bad, "FALSE", d, "NULL")
    else:
        s = f"trim(CAST({c} AS VARCHAR))"
        missing = f"({c} IS NULL OR {_in(s, NUMBER_MISSING)})"
        parsed = f"CAST(try_strptime({s}, {_lit(spec.format or ISO_DATE)}) AS DATE)"
        if spec.format is None:  # ISO only: four-digit year first, so 2025-03-01 is not 25-3-1
            iso = f"regexp_full_match({s}, '[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}')"
            parsed = f"(CASE WHEN {iso} THEN {parsed} END)"
        bad = f"(NOT {missing} AND {parsed} IS NULL)"
        value = f"(CASE WHEN {missing} OR {bad} THEN NULL ELSE {parsed} END)"
        col = _Column(missing, bad, "FALSE", value, s)
    if encode:
        days = f"CAST(date_diff('day', DATE '1970-01-01', {col.value}) AS DOUBLE)"
        return _Column(col.missing, col.bad, col.outside, days, col.shown)
    return col


def _category(c: str, source_type: str, spec: Declared) -> _Column:
    if source_type.upper() == "BOOLEAN":
        t = f"(CASE WHEN {c} THEN 'True' WHEN NOT {c} THEN 'False' END)"
    else:
        t = f"CAST({c} AS VARCHAR)"
    if spec.integer_categories:
        s = f"trim({t})"
        missing = f"({t} IS NULL OR {_in(s, NUMBER_MISSING)})"
        bad = f"(NOT {missing} AND NOT regexp_full_match({s}, {_lit(_INTEGRAL_RE)}))"
        parsed = f"TRY_CAST(regexp_extract({s}, '^[+-]?[0-9]+') AS HUGEINT)"
        known = _in(f"CAST({parsed} AS VARCHAR)", spec.categories)
        outside = f"(NOT {missing} AND NOT {bad} AND NOT {known})"
        value = f"(CASE WHEN {known} THEN CAST({parsed} AS BIGINT) END)"
        return _Column(missing, bad, outside, value, t)
    missing = f"({t} IS NULL OR {t} = '')"
    if not spec.categories:  # any text is a value (training)
        value = f"(CASE WHEN {missing} THEN NULL ELSE {t} END)"
        if spec.label:
            s = f"trim({t})"
            integral = f"regexp_full_match({s}, {_lit(_INTEGRAL_RE)})"
            digits = f"regexp_extract({s}, '^[+-]?[0-9]+')"
            value = f"(CASE WHEN {missing} THEN NULL WHEN {integral} THEN {digits} ELSE {t} END)"
        return _Column(missing, "FALSE", "FALSE", value, t)
    known = _in(t, spec.categories)
    outside = f"(NOT {missing} AND NOT {known})"
    value = f"(CASE WHEN {known} THEN {t} END)"
    if spec.other:
        value = f"(CASE WHEN {missing} THEN NULL WHEN {known} THEN {t} ELSE {_lit(OTHER)} END)"
    return _Column(missing, "FALSE", outside, value, t)


def _column(
    name: str, spec: Declared, source_type: str, *, party: str, source: str, encode: bool
) -> _Column:
    c = _q(name)
    if source_type.upper().strip('"') == "NULL":  # no value at all (a column of None)
        source_type = "VARCHAR"
    upper = source_type.upper()
    numeric = _numeric(source_type)
    text_like = upper == "VARCHAR" or numeric
    if spec.type is ColumnType.NUMBER:
        if not (numeric or upper == "VARCHAR"):
            _refuse_type(name, spec, source_type, party, source)
        return _number(c, numeric)
    if spec.type is ColumnType.BOOLEAN:
        if not (text_like or upper == "BOOLEAN"):
            _refuse_type(name, spec, source_type, party, source)
        return _boolean(c, source_type, encode)
    if spec.type is ColumnType.DATE:
        if not (upper in ("VARCHAR", "DATE") or upper.startswith("TIMESTAMP")):
            _refuse_type(name, spec, source_type, party, source)
        return _date(c, source_type, spec, encode)
    return _category(c, source_type, spec)


# -- reading files --------------------------------------------------------------------------


def _raw_relation(path: Path, *, party: str) -> str:
    """The DuckDB relation of a party's file: CSV as text, Parquet with its own types."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(
            f"{whose(party)}: cannot read {path}: unknown file type {path.suffix or '(none)'!r}. "
            "Use a .csv or .parquet file."
        )
    if not path.exists():
        raise DataError(
            f"{whose(party)}: data file {path} does not exist. Check the party's path in "
            "the job config (it is relative to the job file's directory)."
        )
    if not path.is_file():
        raise DataError(f"{whose(party)}: data path {path} is not a file. Point it at a file.")
    quoted = _lit(str(path))
    if suffix in PARQUET_SUFFIXES:
        return f"read_parquet({quoted})"
    header = csv_header(path, party=party)
    check_unique_columns(header, party=party, source=str(path))
    return f"read_csv({quoted}, all_varchar = true, header = true)"


def csv_header(path: Path, *, party: str) -> list[str]:
    """A CSV file's column names (its first line), without reading the rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{whose(party)}: cannot read {path} as CSV: {exc}") from None
    if not first or not any(first):
        raise DataError(
            f"{whose(party)}: {path} is empty (no header row). Write the column names on "
            "the first line."
        )
    return first


def file_columns(path: Path, *, party: str) -> list[str]:
    """The column names of a party's file, read from its header (CSV) or footer (Parquet)."""
    path = Path(path)
    relation = _raw_relation(path, party=party)
    if path.suffix.lower() in CSV_SUFFIXES:
        return csv_header(path, party=party)
    con = cursor()
    try:
        return list(_types(con, relation, party=party, source=str(path)))
    finally:
        con.close()


def read_raw(path: Path, *, party: str) -> pd.DataFrame:
    """A party's file as it is: a CSV's fields as text, a Parquet file's own column types.

    A missing file, an unknown suffix, an unreadable or empty file, or duplicate column names
    raise :class:`~fedsilo.errors.DataError` naming the party and the path. The frame goes to
    :func:`infer_schema` and :func:`typed_frame` (or :func:`typed_view`) for its types.
    """
    import duckdb

    relation = _raw_relation(path, party=party)
    con = cursor()
    try:
        return con.execute(f"SELECT * FROM {relation}").df()
    except duckdb.Error as exc:
        kind = "Parquet" if Path(path).suffix.lower() in PARQUET_SUFFIXES else "CSV"
        first = str(exc).splitlines()[0]
        raise DataError(
            f"{whose(party)}: cannot read {path} as {kind}: {first}. Check that the file is "
            f"valid {kind}."
        ) from None
    finally:
        con.close()


def _types(con: duckdb.DuckDBPyConnection, raw: str, *, party: str, source: str) -> dict[str, str]:
    import duckdb

    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"{whose(party)}: cannot read {source}: {first}") from None
    return {str(r[0]): str(r[1]) for r in described}


def _relation(
    con: duckdb.DuckDBPyConnection, *, party: str, path: Path | None, frame: pd.DataFrame | None
) -> str:
    if frame is not None:
        check_unique_columns(frame, party=party, source="its table")
        con.register("_party_frame", frame)
        return "_party_frame"
    assert path is not None
    return _raw_relation(path, party=party)


# -- typed rows ---------------------------------------------------------------------------


def typed_view(
    con: duckdb.DuckDBPyConnection,
    declared: Mapping[str, Declared],
    *,
    party: str,
    source: str,
    path: Path | None = None,
    frame: pd.DataFrame | None = None,
    view: str = "_typed_rows",
    encode: bool = False,
) -> tuple[str, int]:
    """Create (or replace) the temp view ``view`` holding the declared columns, typed.

    Returns the view's name and its row count. Raises :class:`SchemaError` for a declared
    column the data lacks or stores with an unusable type, :class:`DataError` for malformed
    values or values outside the declared categories, :class:`MissingValueError` for missing
    values under the ``reject`` policy; each names party, source, column and count. With
    ``encode`` booleans become 0/1 and dates days since 1970-01-01 (DOUBLE, for training).
    """
    raw = _relation(con, party=party, path=path, frame=frame)
    types = _types(con, raw, party=party, source=source)
    absent = sorted(n for n in declared if n not in types)
    if absent:
        raise SchemaError(
            f"{whose(party)}: {source} lacks the declared column(s) {absent}; columns found: "
            f"{listing(sorted(types))}. Fix the file or the job's [columns]."
        )
    cols = {
        n: _column(n, s, types[n], party=party, source=source, encode=encode)
        for n, s in declared.items()
    }
    _check(con, raw, declared, cols, party=party, source=source)
    rows = int(con.execute(f"SELECT COUNT(*) FROM {raw}").fetchone()[0])  # type: ignore[index]
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {_select(cols, raw)}")
    return view, rows


def _select(cols: Mapping[str, _Column], raw: str) -> str:
    select = ", ".join(f"{col.value} AS {_q(n)}" for n, col in cols.items()) or "1 AS _one"
    return f"SELECT {select} FROM {raw}"


def _check(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    declared: Mapping[str, Declared],
    cols: Mapping[str, _Column],
    *,
    party: str,
    source: str,
) -> None:
    """One pass over the rows: every column's missing, malformed and undeclared values."""
    import duckdb

    checks: list[str] = []
    for col in cols.values():
        odd = [c for c in (col.bad, col.outside) if c != "FALSE"]
        checks.append(f"COUNT_IF({col.missing})")
        if col.bad != "FALSE":
            checks += [f"COUNT_IF({col.bad})", f"MIN(CASE WHEN {col.bad} THEN _row END)"]
        if col.outside != "FALSE":
            checks.append(f"COUNT_IF({col.outside})")
        if odd and col.shown != "NULL":
            checks.append(
                f"list_sort(list_distinct(list({col.shown}) "
                f"FILTER (WHERE {' OR '.join(odd)})))[1:{_MAX_SHOWN}]"
            )
    if not checks:
        return
    numbered = f"(SELECT row_number() OVER () AS _row, * FROM {raw})"
    try:
        found = list(con.execute(f"SELECT {', '.join(checks)} FROM {numbered}").fetchone() or ())
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"{whose(party)}: cannot read {source}: {first}") from None
    for name, spec in declared.items():
        col = cols[name]
        missing = int(found.pop(0) or 0)
        bad = first_bad = outside = 0
        shown: Any = None
        if col.bad != "FALSE":
            bad, first_bad = int(found.pop(0) or 0), found.pop(0)
        if col.outside != "FALSE":
            outside = int(found.pop(0) or 0)
        if (col.bad != "FALSE" or col.outside != "FALSE") and col.shown != "NULL":
            shown = found.pop(0)
        _raise_for(
            name, spec, party, source, _Found(missing, bad, first_bad, outside, shown, col.what)
        )


def typed_frame(
    frame: pd.DataFrame, declared: Mapping[str, Declared], *, party: str, source: str
) -> pd.DataFrame:
    """The declared columns of ``frame`` (as :func:`read_raw` gives it), typed for training.

    Numbers, booleans (0/1) and dates (days since 1970-01-01) are float64 with NaN for a
    missing value; categories are text with a missing value as NA. Errors as
    :func:`typed_view`'s.
    """
    con = cursor()
    try:
        raw = _relation(con, party=party, path=None, frame=frame)
        types = _types(con, raw, party=party, source=source)
        cols = {
            n: _column(n, s, types[n], party=party, source=source, encode=True)
            for n, s in declared.items()
        }
        _check(con, raw, declared, cols, party=party, source=source)
        out = con.execute(_select(cols, raw)).df()
    finally:
        con.close()
    if not declared:
        return pd.DataFrame(index=range(len(out)))
    return out


@dataclass(frozen=True)
class _Found:
    missing: int
    bad: int
    first_bad: Any
    outside: int
    shown: Any
    what: str = ""


def _shown(shown: Any) -> str:
    values = ", ".join(repr(v) for v in shown or [])
    more = f" (first {_MAX_SHOWN} shown)" if shown and len(shown) >= _MAX_SHOWN else ""
    return values + more


def _raise_for(name: str, spec: Declared, party: str, source: str, f: _Found) -> None:
    where = f"{whose(party)} column {name!r} ({source})"
    if f.bad:
        at = f"row {f.first_bad}, {f.bad} value(s) in all"
        if spec.type is ColumnType.NUMBER:
            raise DataError(
                f"{where} {f.what or 'is not a number'} ({at}): write plain decimals with a "
                "'.' point and no thousands separator (1234.5, not 1,234.50 or 1234,5), a finite "
                "value, or declare the column categorical."
            )
        if spec.type is ColumnType.BOOLEAN:
            raise DataError(
                f"{where} is not a boolean ({at}): found {_shown(f.shown)}. A boolean is "
                f"one of {'/'.join(BOOLEAN_TRUE)} or {'/'.join(BOOLEAN_FALSE)} (any case)."
            )
        if spec.type is ColumnType.DATE:
            if spec.format is None:
                raise DataError(
                    f"{where} is not an ISO date YYYY-MM-DD ({at}): found {_shown(f.shown)}. "
                    "A date such as 03/01/2025 is ambiguous: declare the column's format, "
                    'e.g. format = "%d/%m/%Y" (day first) or "%m/%d/%Y" (month first).'
                )
            raise DataError(
                f"{where} does not match the declared date format {spec.format!r} ({at}): "
                f"found {_shown(f.shown)}. Fix the file or the column's format."
            )
        raise DataError(
            f"{where} is not an integer ({at}): declared integer categories accept 2024 or "
            "2024.0 (an integral value), not 2024.5"
        )
    if f.outside and not spec.other:
        raise DataError(
            f"{where} has {f.outside} value(s) outside the declared categories "
            f"{list(spec.categories)}: {_shown(f.shown)}. Fix the file, add the values to "
            f"'categories', or set other = true to count them in the group {OTHER!r}."
        )
    if f.missing and not spec.skip_missing:
        raise MissingValueError(
            f"{where} has {f.missing} missing value(s). Fill them in, or set missing = 'skip' "
            "on the column to read them as SQL NULL."
        )


# -- training schema ----------------------------------------------------------------------


def schema_columns(schema: TableSchema, *, label: bool = True) -> dict[str, Declared]:
    """How a training party reads its rows under the agreed schema (missing values counted,
    the job's ``data.missing`` decides)."""
    out = {c.name: Declared(c.type, skip_missing=True, format=c.format) for c in schema.columns}
    if label:
        out[schema.label] = Declared(ColumnType.CATEGORY, skip_missing=True, label=True)
    return out


def infer_schema(
    frame: pd.DataFrame,
    *,
    label: str,
    id_column: str | None = None,
    declared: Mapping[str, ColumnSchema] | None = None,
    party: str,
    source: str,
) -> TableSchema:
    """The party's schema: every column but the label and id column, with its type.

    ``declared`` columns (the job's ``data.columns``) keep their declared type and format;
    an undeclared column is ``number`` if the file stores numbers or every present value is a
    number (see the module docstring), else ``category``; a Parquet date or timestamp column
    must be declared. Column order is the file's. The values are checked when the rows are
    read with the agreed schema (:func:`typed_frame`, at the party's statistics).
    """
    check_unique_columns(frame, party=party, source=source)
    found = [str(c) for c in frame.columns]
    check_header(
        found, label=label, id_column=id_column, declared=declared, party=party, source=source
    )
    names = [n for n in found if n not in (label, id_column)]
    columns = infer_columns(frame, names, declared or {}, party=party, source=source)
    return TableSchema(tuple(columns), label)


def infer_columns(
    frame: pd.DataFrame,
    names: Sequence[str],
    declared: Mapping[str, ColumnSchema],
    *,
    party: str,
    source: str,
) -> list[ColumnSchema]:
    """The columns ``names`` of ``frame`` with their types: declared, else inferred (a file's
    numeric type or text whose every present value is a number: ``number``; other text:
    ``category``; a date/time type must be declared)."""
    con = cursor()
    try:
        con.register("_party_frame", frame)
        types = _types(con, "_party_frame", party=party, source=source)
        texts = [n for n in names if n not in declared and types[n].upper() == "VARCHAR"]
        found = _text_columns(con, texts) if texts else {}
    finally:
        con.close()
    for name, text in found.items():
        text.check(name, party=party, source=source)
    columns: list[ColumnSchema] = []
    for name in names:
        if name in declared:
            columns.append(declared[name])
            continue
        t = types[name].upper()
        if _numeric(t):
            kind = ColumnType.NUMBER
        elif t == "VARCHAR":
            kind = ColumnType.CATEGORY if found[name].not_numbers else ColumnType.NUMBER
        elif t == "DATE" or t.startswith("TIMESTAMP") or t.startswith("TIME"):
            raise SchemaError(
                f"{whose(party)} column {name!r} holds date/time values ({t}, {source}); "
                f'declare its type: "date" (encoded as days) or "category".'
            )
        else:
            kind = ColumnType.CATEGORY
        columns.append(ColumnSchema(name, kind))
    return columns


MANY_CATEGORIES = 20
"""An undeclared text column with more distinct values than this, that are also at least half
of its values, is refused: read as a category, every value would reach the coordinator."""


@dataclass(frozen=True)
class _Text:
    """What inference sees of an undeclared text column: how its values read as numbers, and
    how many distinct values it would share as a category."""

    numbers: int  # present values that are numbers
    not_numbers: int  # present values that are not (then the column is not a number)
    first_bad: int  # the first such row (1-based)
    shown: list[str]  # the first of them, sorted
    distinct: int  # distinct non-empty texts (a category's values)
    present: int  # non-empty texts

    def check(self, name: str, *, party: str, source: str) -> None:
        """Refuse what inference would get silently wrong and share with the coordinator:
        a number column with a few malformed values (as a category, its numbers would be
        category names) and a column of (almost) unique texts (an identifier or free text)."""
        where = f"{whose(party)} column {name!r} ({source})"
        key = name if re.fullmatch(_TOML_BARE_KEY, name) else json.dumps(name, ensure_ascii=False)
        if self.not_numbers and self.numbers >= self.not_numbers:
            raise SchemaError(
                f"{where} looks numeric ({self.numbers} of {self.numbers + self.not_numbers} "
                f"values are numbers), but row {self.first_bad} holds {self.shown[0]!r} "
                f"({self.not_numbers} such value(s): {_shown(self.shown)}). Read as a category, "
                "each of its numbers would be a feature of its own, and its name (the value) "
                "a category a horizontal job shares with the coordinator. "
                "Write plain decimals (1234.5, not 1,234.50; a missing value is empty or NA), "
                f'or declare it: columns = {{ {key} = "number" }} reports every bad row, '
                f'{key} = "category" if its values are labels.'
            )
        if (
            self.not_numbers
            and self.distinct > MANY_CATEGORIES
            and 2 * self.distinct >= self.present
        ):
            raise SchemaError(
                f"{where} would be a category of {self.distinct} distinct values in "
                f"{self.present} rows: every value would be a feature of its own, and a "
                "category name a horizontal job shares with the coordinator. If it identifies "
                "rows, declare it the id column; if it is free text, remove it from the file; "
                "to use its values as categories, declare it: "
                f'columns = {{ {key} = "category" }}.'
            )


def _text_columns(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, _Text]:
    """One pass over ``_party_frame``: each text column's :class:`_Text`."""
    checks: list[str] = []
    for name in names:
        c = _q(name)
        col = _number(c, numeric=False)
        checks += [
            f"COUNT_IF(NOT {col.missing} AND NOT {col.bad})",
            f"COUNT_IF({col.bad})",
            f"MIN(CASE WHEN {col.bad} THEN _row END)",
            f"list_sort(list_distinct(list({c}) FILTER (WHERE {col.bad})))[1:{_MAX_SHOWN}]",
            f"COUNT(DISTINCT NULLIF({c}, ''))",
            f"COUNT(NULLIF({c}, ''))",
        ]
    numbered = "(SELECT row_number() OVER () AS _row, * FROM _party_frame)"
    row = list(con.execute(f"SELECT {', '.join(checks)} FROM {numbered}").fetchone() or ())
    out = {}
    for i, name in enumerate(names):
        numbers, bad, first, shown, distinct, present = row[6 * i : 6 * i + 6]
        out[name] = _Text(
            int(numbers), int(bad), int(first or 0), list(shown or []), int(distinct), int(present)
        )
    return out


def check_header(
    found: Sequence[str],
    *,
    label: str | None,
    id_column: str | None = None,
    declared: Mapping[str, Any] | None = None,
    party: str,
    source: str,
) -> None:
    """Header checks, before any row is read: the label, id and declared columns exist."""
    if label is not None and label not in found:
        raise DataError(
            f"{whose(party)}: label column {label!r} (data.label) is not in {source}; "
            f"columns found: {listing(found)}. Set data.label to the column holding the "
            "class of each row."
        )
    if id_column is not None and id_column not in found:
        raise DataError(
            f"{whose(party)}: id column {id_column!r} (data.id) is not in {source}; columns "
            f"found: {listing(found)}. Fix data.id or remove it."
        )
    if id_column is not None and id_column == label:
        raise ConfigError(f"data.id and data.label both name column {label!r}; they must differ")
    for name in sorted(declared or {}):
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
                f"{whose(party)}: data.columns declares column {name!r} but {source} has no "
                f"such column; columns found: {listing(found)}. Fix the file or the "
                "declaration."
            )
