"""Normalization of customer IDs before private set intersection.

Two parties can only match a customer if they spell its ID the same way, so
both sides run every ID through :func:`normalize_id` with the same
:class:`IdNormalization` before PSI. The rules, in order:

1. missing values (``None``, NaN, ``pd.NA``, ``NaT``) and infinities are
   rejected; so are booleans (``True`` would otherwise collide with ``1``);
2. ``bytes`` are decoded as UTF-8; integers become their decimal text; floats
   that hold an integer value become that integer's text (``1.0`` -> ``"1"``);
   other floats use ``str`` (``1.5`` -> ``"1.5"``); anything else uses ``str``;
3. whitespace: leading/trailing whitespace is stripped (``strip``) and runs of
   internal whitespace become one space (``collapse_whitespace``);
4. text is case-folded (``casefold``);
5. decimal strings with an all-zero fraction lose it (``"1.0"`` and
   ``" 1.00 "`` -> ``"1"``), so an ID column that went through a float dtype
   still matches an integer one. Leading zeros are kept: ``"007"`` and ``7``
   are different IDs.

An ID that is empty after normalization counts as missing.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.errors import DataError

__all__ = [
    "DuplicatePolicy",
    "IdNormalization",
    "NormalizedIds",
    "normalize_id",
    "normalize_ids",
]

_INTEGRAL_DECIMAL = re.compile(r"^([+-]?\d+)\.0*$")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class IdNormalization:
    """How IDs are canonicalized; both parties must use the same settings."""

    casefold: bool = True
    strip: bool = True
    collapse_whitespace: bool = True


class DuplicatePolicy(enum.Enum):
    """What to do when one party holds the same normalized ID on several rows."""

    REJECT = "reject"
    """Raise :class:`~fedsilo.errors.DataError` (default)."""
    FIRST = "first"
    """Keep the first row holding the ID; later rows are never aligned."""


class _MissingIdError(Exception):
    """Internal: the value is not a usable ID (message says why)."""


def _canonical_text(value: object) -> str:
    if value is None:
        raise _MissingIdError("ID is missing (None)")
    if isinstance(value, bool | np.bool_):
        raise _MissingIdError("ID is a boolean, not an identifier")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            raise _MissingIdError("ID is missing (NaN)")
        if math.isinf(number):
            raise _MissingIdError("ID is infinite")
        return str(int(number)) if number.is_integer() else str(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _MissingIdError("ID bytes are not valid UTF-8") from exc
    if not isinstance(value, str):
        if not pd.api.types.is_scalar(value):
            raise _MissingIdError(f"ID is a {type(value).__name__}, not a scalar")
        scalar: Any = value
        if bool(pd.isna(scalar)):
            raise _MissingIdError(f"ID is missing ({value!r})")
    return str(value)


def _normalize(value: object, normalization: IdNormalization) -> str:
    text = _canonical_text(value)
    if normalization.strip:
        text = text.strip()
    if normalization.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    if normalization.casefold:
        text = text.casefold()
    match = _INTEGRAL_DECIMAL.match(text)
    if match is not None:
        text = str(int(match.group(1)))
    if not text:
        raise _MissingIdError("ID is empty")
    return text


def normalize_id(value: object, normalization: IdNormalization | None = None) -> str:
    """Return the canonical text of one ID (see the module docstring for the rules).

    Raises :class:`~fedsilo.errors.DataError` if the value is missing or unusable;
    use :func:`normalize_ids` to get messages naming the party, column and row.
    """
    try:
        return _normalize(value, normalization or IdNormalization())
    except _MissingIdError as exc:
        raise DataError(f"{exc}; fix the ID or drop the row before alignment") from None


@dataclass(frozen=True, eq=False)
class NormalizedIds:
    """One party's IDs after normalization and duplicate handling.

    ``ids[i]`` is a unique normalized ID and ``rows[i]`` the (0-based) position of
    the row holding it in the sequence the party passed in.
    """

    party: str
    column: str
    ids: list[str]
    rows: npt.NDArray[np.int64]
    num_rows: int
    num_dropped_duplicates: int = 0
    _row_of: dict[str, int] = field(default_factory=dict, repr=False)

    def row_of(self, normalized_id: str) -> int | None:
        """Local row holding ``normalized_id``, or ``None`` if the party lacks it."""
        return self._row_of.get(normalized_id)

    def rows_of(self, normalized_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Local rows holding ``normalized_ids`` (all must be present)."""
        row_of = self._row_of
        return np.fromiter(
            (row_of[i] for i in normalized_ids), dtype=np.int64, count=len(normalized_ids)
        )


def normalize_ids(
    values: Iterable[object],
    *,
    party: str,
    column: str = "id",
    normalization: IdNormalization | None = None,
    duplicates: DuplicatePolicy = DuplicatePolicy.REJECT,
) -> NormalizedIds:
    """Normalize a party's whole ID column and apply the duplicate policy.

    Rows are numbered by position (0-based) in ``values``, not by any pandas index
    label. Error messages name the party, column and row but never print the ID
    itself, because logs may travel further than the data.
    """
    norm = normalization or IdNormalization()
    index: dict[str, int] = {}
    ids: list[str] = []
    rows: list[int] = []
    duplicate_rows: list[tuple[int, int]] = []  # (row, row of first occurrence)
    num_rows = 0
    for row, value in enumerate(values):
        num_rows += 1
        try:
            text = _normalize(value, norm)
        except _MissingIdError as exc:
            raise DataError(
                f"party {party!r}, column {column!r}, row {row}: {exc}; "
                "fix the ID or drop the row before alignment"
            ) from None
        first = index.get(text)
        if first is not None:
            duplicate_rows.append((row, first))
            continue
        index[text] = row
        ids.append(text)
        rows.append(row)
    if duplicate_rows and duplicates is DuplicatePolicy.REJECT:
        distinct = len({first for _, first in duplicate_rows})
        row, first = duplicate_rows[0]
        raise DataError(
            f"party {party!r}, column {column!r}: {distinct} ID(s) appear on more than one row "
            f"after normalization ({len(duplicate_rows)} extra row(s); first duplicate at row "
            f"{row}, same ID as row {first}); de-duplicate the data so that each customer "
            "has one row (a vertical job has no setting to keep one of them; from Python, "
            "duplicates=DuplicatePolicy.FIRST keeps the first)"
        )
    return NormalizedIds(
        party=party,
        column=column,
        ids=ids,
        rows=np.asarray(rows, dtype=np.int64),
        num_rows=num_rows,
        num_dropped_duplicates=len(duplicate_rows),
        _row_of=index,
    )
