"""Reading a party's rows with the declared types: no type is guessed from the file.

:func:`typed_view` reads a CSV (every field as text: DuckDB's ``all_varchar``, so its sniffer
guesses no type), a Parquet file or a DataFrame, and turns each declared column into its
declared type with casts written here, after checking every value. What each declared type
accepts (docs/analytics.md says the same):

* ``number``: a decimal number, optionally signed, with an optional exponent (``146``,
  ``-0.5``, ``1e3``, ``.5``), surrounding spaces ignored. Missing: an empty field, ``NA``,
  ``N/A``, ``NaN``, ``nan``, ``NULL``, ``null``, ``None`` (and NaN/NULL in Parquet). A
  thousands separator (``1,234.50``), a decimal comma (``146,5``), ``inf`` or any other text
  is an error naming party, file, column, first row and count. Parquet numeric types are
  taken as they are; booleans, dates and other types are refused.
* ``category`` with text categories: the text exactly as written, case and leading zeros
  kept (``Yes``, ``True``, ``T``, ``03/01/2025``, ``01`` are text, never booleans, dates or
  numbers). Missing: an empty field only (``NA`` may be Namibia). Parquet booleans read as
  ``True``/``False`` (what pandas writes to CSV), other types as their DuckDB text.
* ``category`` with integer categories: an integer (``2024``, ``07`` is 7), or a number with an
  integral value (``2024.0``, as pandas writes an integer column with a missing value); a
  fractional value (``2024.5``) is an error. Missing: as for numbers.

A value outside the declared categories is an error naming party, file, column, the values and
their count, unless the (text) column declares ``other``: such values then form the group
``"other"``.
A missing value is an error with its count unless the column's missing policy is ``skip``
(SQL NULL). Row numbers are 1-based data rows (row 1 follows a CSV's header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # DuckDB (the `analytics` extra) loads when a typed view is made
    import duckdb

from fedsilo.data.tabular import PARQUET_SUFFIXES, ColumnType
from fedsilo.errors import DataError, MissingValueError, SchemaError

NUMBER_MISSING = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")
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


@dataclass(frozen=True)
class Declared:
    """One declared column: its type, public categories, and what to do with odd values."""

    type: ColumnType
    categories: tuple[str | int, ...] = ()
    skip_missing: bool = False
    other: bool = False

    @property
    def integer_categories(self) -> bool:
        return bool(self.categories) and all(isinstance(c, int) for c in self.categories)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(expr: str, values: Sequence[str | int]) -> str:
    return f"{expr} IN ({', '.join(_lit(str(v)) for v in values)})"


@dataclass(frozen=True)
class _Column:
    """SQL over the raw relation: is the value missing, malformed, outside; its typed value."""

    missing: str
    bad: str
    outside: str
    value: str
    shown: str  # the raw text, for messages (category columns only)


def _column(name: str, spec: Declared, source_type: str, *, party: str, source: str) -> _Column:
    c = _q(name)
    numeric = source_type.upper() in _NUMERIC_TYPES or source_type.upper().startswith("DECIMAL")
    if spec.type is ColumnType.NUMBER:
        if numeric:
            v = f"CAST({c} AS DOUBLE)"
            return _Column(f"({v} IS NULL OR isnan({v}))", f"isinf({v})", "FALSE", v, "NULL")
        if source_type.upper() != "VARCHAR":
            raise SchemaError(
                f"party {party!r} column {name!r} is declared number but {source} stores it as "
                f"{source_type}. Write numbers (or text holding numbers) in that column."
            )
        s = f"trim({c})"
        missing = f"({c} IS NULL OR {_in(s, NUMBER_MISSING)})"
        bad = f"(NOT {missing} AND NOT regexp_full_match({s}, {_lit(_NUMBER_RE)}))"
        value = f"(CASE WHEN {missing} OR {bad} THEN NULL ELSE CAST({s} AS DOUBLE) END)"
        return _Column(missing, bad, "FALSE", value, "NULL")
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
    known = _in(t, spec.categories)
    outside = f"(NOT {missing} AND NOT {known})"
    value = f"(CASE WHEN {known} THEN {t} END)"
    if spec.other:
        value = f"(CASE WHEN {missing} THEN NULL WHEN {known} THEN {t} ELSE {_lit(OTHER)} END)"
    return _Column(missing, "FALSE", outside, value, t)


def typed_view(
    con: duckdb.DuckDBPyConnection,
    declared: Mapping[str, Declared],
    *,
    party: str,
    source: str,
    path: Path | None = None,
    frame: pd.DataFrame | None = None,
    view: str = "_typed_rows",
) -> tuple[str, int]:
    """Create (or replace) the temp view ``view`` holding the declared columns, typed.

    Returns the view's name and its row count. Raises :class:`SchemaError` for a declared
    column the data lacks or stores with an unusable type, :class:`DataError` for malformed
    values or values outside the declared categories, :class:`MissingValueError` for missing
    values under the ``reject`` policy; each names party, source, column and count.
    """
    import duckdb

    if frame is not None:
        con.register("_party_frame", frame)
        raw = "_party_frame"
    else:
        assert path is not None
        if not path.exists():
            raise DataError(f"party {party!r}: data file {path} does not exist")
        quoted = _lit(str(path))
        if path.suffix.lower() in PARQUET_SUFFIXES:
            raw = f"read_parquet({quoted})"
        else:
            raw = f"read_csv({quoted}, all_varchar = true, header = true)"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"party {party!r}: cannot read {source}: {first}") from None
    types = {str(r[0]): str(r[1]) for r in described}
    absent = sorted(n for n in declared if n not in types)
    if absent:
        raise SchemaError(
            f"party {party!r}: {source} lacks the declared column(s) {absent}; columns found: "
            f"{sorted(types)[:20]}. Fix the file or the job's [columns]."
        )
    cols = {n: _column(n, s, types[n], party=party, source=source) for n, s in declared.items()}
    numbered = f"(SELECT row_number() OVER () AS _row, * FROM {raw})"
    checks: list[str] = ["COUNT(*)"]
    for col in cols.values():
        checks += [
            f"COUNT_IF({col.missing})",
            f"COUNT_IF({col.bad})",
            f"MIN(CASE WHEN {col.bad} THEN _row END)",
            f"COUNT_IF({col.outside})",
            f"list_sort(list_distinct(list({col.shown}) FILTER (WHERE {col.outside})))[1:{_MAX_SHOWN}]",
        ]
    try:
        found = con.execute(f"SELECT {', '.join(checks)} FROM {numbered}").fetchone()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"party {party!r}: cannot read {source}: {first}") from None
    assert found is not None
    rows = int(found[0] or 0)
    for i, (name, spec) in enumerate(declared.items()):
        missing, bad, first_bad, outside, shown = found[1 + 5 * i : 6 + 5 * i]
        _raise_for(
            name,
            spec,
            party,
            source,
            int(missing or 0),
            int(bad or 0),
            first_bad,
            int(outside or 0),
            shown,
        )
    select = ", ".join(f"{col.value} AS {_q(n)}" for n, col in cols.items()) or "1 AS _one"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} FROM {raw}")
    return view, rows


def _raise_for(
    name: str,
    spec: Declared,
    party: str,
    source: str,
    missing: int,
    bad: int,
    first_bad: Any,
    outside: int,
    shown: Any,
) -> None:
    where = f"party {party!r} column {name!r} ({source})"
    if bad:
        if spec.type is ColumnType.NUMBER:
            what = (
                "is not a number: write plain decimals with a '.' point and no thousands "
                "separator (1234.5, not 1,234.50 or 1234,5)"
            )
        else:
            what = "is not an integer (declared integer categories accept 2024 or 2024.0)"
        raise DataError(f"{where} {what}: row {first_bad}, {bad} value(s) in all")
    if outside and not spec.other:
        values = ", ".join(repr(v) for v in shown or [])
        more = f" (first {_MAX_SHOWN} shown)" if shown and len(shown) >= _MAX_SHOWN else ""
        raise DataError(
            f"{where} has {outside} value(s) outside the declared categories "
            f"{list(spec.categories)}: {values}{more}. Fix the file, add the values to "
            f"'categories', or set other = true to count them in the group {OTHER!r}."
        )
    if missing and not spec.skip_missing:
        raise MissingValueError(
            f"{where} has {missing} missing value(s). Fill them in, or set missing = 'skip' on "
            "the column to read them as SQL NULL."
        )
