"""Vertical parties' tables: loading a party's own file (or built-in split), selecting rows.

A training party reads its file with declared or inferred column types and encodes it
(:class:`~fedsilo.vertical.encoding.PartyEncoding`); a scoring party reads its file of new
customers with the encoding saved in its model part (:func:`load_scoring_table`), so the
types, category values and missing-value fills are the training run's.

Alignment across parties is PSI relayed by the coordinator
(:meth:`fedsilo.vertical.runner.VerticalRunner.align`, the parties' side in
:mod:`fedsilo.vertical.agent`); there is no other alignment path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.data.tabular import ColumnType, frame_source, listing, read_frame
from fedsilo.data.typed import Declared, file_columns, infer_columns, read_raw, typed_frame
from fedsilo.errors import DataError, MissingValueError
from fedsilo.vertical.config import VerticalJobConfig, VerticalPartyConfig
from fedsilo.vertical.encoding import FloatArray, PartyEncoding

BUILTIN_SPLITS = ("breast_cancer/guest", "breast_cancer/host")


@dataclass(frozen=True)
class PartyTable:
    """A party's rows: IDs, encoded features (NaN where a ``mean`` fill still waits for the
    training rows, :meth:`PartyEncoding.fit`), the encoding and, at the guest, 0/1 labels."""

    name: str
    ids: list[object]
    features: FloatArray
    encoding: PartyEncoding
    labels: npt.NDArray[np.float64] | None

    @property
    def feature_names(self) -> list[str]:
        return self.encoding.feature_names

    def fitted(self, train: npt.NDArray[np.int64], *, where: str) -> PartyTable:
        """The table with its encoding's fills learnt from the rows ``train`` and applied."""
        encoding = self.encoding.fit(self.features[train], where=where)
        return replace(self, features=encoding.fill(self.features), encoding=encoding)


@dataclass(frozen=True)
class AlignedData:
    """Every party's rows in the PSI-agreed order, and the shared train/test positions."""

    parties: dict[str, PartyTable]
    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    local_rows: dict[str, int]

    @property
    def num_aligned(self) -> int:
        return len(self.train) + len(self.test)


def _builtin(party: VerticalPartyConfig) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    if party.builtin not in BUILTIN_SPLITS:
        raise DataError(
            f"party {party.name!r}: builtin {party.builtin!r} is unknown; use one of "
            f"{list(BUILTIN_SPLITS)}"
        )
    data = load_breast_cancer()
    cols = slice(0, 10) if party.builtin.endswith("guest") else slice(10, 30)
    frame = pd.DataFrame(data.data[:, cols], columns=[f"x{j}" for j in range(30)][cols])
    frame.insert(0, party.id_column, [f"id{i}" for i in range(len(frame))])
    if party.label is not None:
        frame[party.label] = data.target
    return frame


def check_party_header(
    party: VerticalPartyConfig, found: list[str], where: str, *, guest_label: str | None
) -> list[str]:
    """The party's feature columns, from its header alone (before any row is read or any key
    made): the ID, label, declared and feature columns exist; a host holds no column named like
    the guest's label (a copy of the label would leak into the model)."""
    for column in (party.id_column, party.label):
        if column is not None and column not in found:
            raise DataError(
                f"{where} has no column {column!r}; columns: {listing(found)}. Fix the job's "
                "id_column/label for this party or the file."
            )
    if party.label is None and guest_label is not None and guest_label in found:
        raise DataError(
            f"{where} has a column named {guest_label!r}, like the guest's label column: a "
            "host must not hold the label (it would leak into the model as a feature). Remove "
            "the column from the host's file."
        )
    own = (party.id_column, party.label)
    names = party.features or [c for c in found if c not in own]
    absent = [c for c in names if c not in found]
    if absent or not names:
        raise DataError(
            f"{where}: feature columns {absent or names} are missing or empty; columns: "
            f"{listing(found)}"
        )
    if guest_label is not None and party.label is None and guest_label in names:
        raise DataError(f"{where}: feature {guest_label!r} is the guest's label column")
    undeclared = sorted(set(party.columns) - set(names))
    if undeclared:
        raise DataError(
            f"{where}: 'columns' declares {undeclared}, which are not among its features "
            f"{listing(names)}"
        )
    return names


def check_headers(job: VerticalJobConfig, *, skip: Mapping[str, object] | None = None) -> None:
    """Every party file's header against the job, before any row is read, any ID is hashed
    or any key is made (the simulation and the CLI run this first; a deployed party checks its
    own header when the job opens). Parties in ``skip`` (given DataFrames) are checked when
    their agents read them."""
    for party in job.parties:
        if party.path is not None and party.name not in (skip or {}):
            where = f"party {party.name!r} file {party.path}"
            found = file_columns(Path(party.path), party=party.name)
            check_party_header(party, found, where, guest_label=job.guest.label)


def load_party_table(
    party: VerticalPartyConfig, given: object = None, *, guest_label: str | None = None
) -> PartyTable:
    """Read a party's file (CSV/Parquet), built-in split or given DataFrame with the one typed
    reader (the same checks whatever the source).

    Header problems are found first (:func:`check_party_header`); then feature columns are
    read with their declared (or inferred) types and encoded, all here at the owning party
    (:class:`~fedsilo.vertical.encoding.PartyEncoding`: categories one-hot over the file's
    values; a missing value refused under ``reject``, filled under ``constant``, left NaN
    under ``mean`` until :meth:`PartyTable.fitted` learns the fills from the training rows);
    the label is 1 for ``label_positive`` (or for 1, with 0/1 labels) and 0 otherwise.
    """
    if given is not None:
        frame = read_frame(given, party=party.name)
        source = frame_source(party.name)
        where = f"party {party.name!r} {source}"
    elif party.builtin is not None:
        frame = _builtin(party)
        source = f"builtin {party.builtin}"
        where = f"party {party.name!r} ({source})"
    elif party.path is None:
        raise DataError(
            f"party {party.name!r} has no data: give it a path or a builtin in [[parties]], "
            f"or pass its rows as a DataFrame, fedsilo.simulate(job, data={{{party.name!r}: df}})"
        )
    else:
        path = Path(party.path)
        source = str(path)
        where = f"party {party.name!r} file {path}"
        found = file_columns(path, party=party.name)
        check_party_header(party, found, where, guest_label=guest_label)
        frame = read_raw(path, party=party.name)
    names = check_party_header(
        party, [str(c) for c in frame.columns], where, guest_label=guest_label
    )
    declared = {n: c.column(n) for n, c in party.columns.items()}
    schema = infer_columns(frame, names, declared, party=party.name, source=source)
    spec = {c.name: Declared(c.type, skip_missing=True, format=c.format) for c in schema}
    if party.label is not None:
        spec[party.label] = Declared(ColumnType.CATEGORY, skip_missing=True, label=True)
    typed = typed_frame(frame, spec, party=party.name, source=source)
    for col in schema:
        if typed[col.name].isna().all():
            raise DataError(
                f"{where}: feature column {col.name!r} has no value at all "
                f"({len(typed)} rows); remove it from the file or from the party's features"
            )
    encoding = PartyEncoding.of_training_file(
        typed, schema, party.missing, listed=bool(party.features), label=party.label
    )
    features = encoding.encode(typed, where=where)
    labels = None if party.label is None else _labels(typed[party.label], party, where)
    return PartyTable(party.name, frame[party.id_column].tolist(), features, encoding, labels)


def check_scoring_columns(
    found: list[str], encoding: PartyEncoding, id_column: str, *, where: str, run: str
) -> None:
    """A scoring file's columns besides the ID against the ones the party trained with:
    exactly those (the guest's label column may be there; with listed features, any other
    column is ignored, as training ignored it)."""
    if id_column not in found:
        raise DataError(
            f"{where} has no column {id_column!r} (the scoring job's id_column for this "
            f"party); columns: {listing(found)}"
        )
    trained = [c.name for c in encoding.columns]
    missing = [c for c in trained if c not in found]
    ignored = {id_column, *([encoding.label] if encoding.label else [])}
    unexpected = (
        [] if encoding.listed else [c for c in found if c not in trained and c not in ignored]
    )
    if missing or unexpected:
        lacks = [f"missing {listing(missing)}"] if missing else []
        extra = [f"unexpected {listing(unexpected)}"] if unexpected else []
        raise DataError(
            f"{where}: its columns are not those this party trained with in run {run!r} "
            f"({'; '.join(lacks + extra)}; trained with {listing(trained)} besides the ID). "
            "Is the party's path its own file (not another party's)? Give it the training "
            "columns, with the same names."
        )


def load_scoring_table(
    name: str, path: Path, id_column: str, encoding: PartyEncoding, *, run: str
) -> PartyTable:
    """A scoring party's file of new customers, read and encoded as its training run did
    (``encoding``, from its saved part): the columns must be the trained ones
    (:func:`check_scoring_columns`); every row is checked (a category value the training data
    did not have, or a missing value under ``reject``, is refused naming column and row)."""
    where = f"party {name!r} file {path}"
    found = file_columns(path, party=name)
    check_scoring_columns(found, encoding, id_column, where=where, run=run)
    frame = read_raw(path, party=name)
    spec = {c.name: Declared(c.type, skip_missing=True, format=c.format) for c in encoding.columns}
    typed = typed_frame(frame, spec, party=name, source=str(path))
    features = encoding.encode(typed, where=where, run=run)
    return PartyTable(name, frame[id_column].tolist(), features, encoding, None)


def _labels(series: pd.Series, party: VerticalPartyConfig, where: str) -> npt.NDArray[np.float64]:
    missing = int(series.isna().sum())
    if missing:
        raise MissingValueError(
            f"{where}: label column {party.label!r} is empty in {missing} row(s); labels are "
            "never imputed: fill in or remove those rows."
        )
    texts = series.astype(str)
    found = sorted(set(texts))
    positive = party.label_positive
    if positive is None:
        if set(found) <= {"0", "1"}:
            return np.asarray(texts == "1", dtype=np.float64)
        raise DataError(
            f"{where}: label column {party.label!r} holds {listing(found)}; a binary label is 0/1 "
            f'or declares its positive class, e.g. label_positive = "{found[-1]}" (every other '
            "value is then the negative class)."
        )
    if positive not in found or len(found) != 2:
        raise DataError(
            f"{where}: label column {party.label!r} holds {listing(found)}; label_positive = "
            f"{positive!r} needs exactly two classes, one of them {positive!r}."
        )
    return np.asarray(texts == positive, dtype=np.float64)


def select_rows(table: PartyTable, rows: npt.NDArray[np.int64]) -> PartyTable:
    """The table's rows ``rows``, in that order (e.g. the PSI-agreed order)."""
    labels = None if table.labels is None else table.labels[rows]
    return PartyTable(
        table.name, [table.ids[i] for i in rows], table.features[rows], table.encoding, labels
    )
