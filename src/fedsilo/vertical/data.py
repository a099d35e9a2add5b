"""Vertical parties' tables: loading a party's own file (or built-in split), selecting rows.

Alignment across parties is PSI relayed by the coordinator
(:meth:`fedsilo.vertical.runner.VerticalRunner.align`, the parties' side in
:mod:`fedsilo.vertical.agent`); there is no other alignment path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.data.preprocess import CONSTANT_CATEGORY_FILL
from fedsilo.data.tabular import (
    ColumnSchema,
    ColumnType,
    MissingPolicy,
    frame_source,
    listing,
    read_frame,
)
from fedsilo.data.typed import Declared, file_columns, infer_columns, read_raw, typed_frame
from fedsilo.errors import DataError, MissingValueError
from fedsilo.vertical.config import VerticalJobConfig, VerticalPartyConfig

BUILTIN_SPLITS = ("breast_cancer/guest", "breast_cancer/host")


@dataclass(frozen=True)
class PartyTable:
    name: str
    ids: list[object]
    features: npt.NDArray[np.float64]
    feature_names: list[str]
    labels: npt.NDArray[np.float64] | None


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
    read with their declared (or inferred) types, missing values handled by the party's
    ``missing`` policy and categories one-hot encoded, all here at the owning party; the
    label is 1 for ``label_positive`` (or for 1, with 0/1 labels) and 0 otherwise.
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
    features, feature_names = encode_features(typed, schema, party.missing, where=where)
    labels = None if party.label is None else _labels(typed[party.label], party, where)
    return PartyTable(
        party.name,
        frame[party.id_column].tolist(),
        features,
        feature_names,
        labels,
    )


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


def encode_features(
    typed: pd.DataFrame, schema: list[ColumnSchema], policy: MissingPolicy, *, where: str
) -> tuple[npt.NDArray[np.float64], list[str]]:
    """The owning party's features: numbers (booleans 0/1, dates in days) with missing values
    under ``policy`` (``mean``: the column's mean over the party's rows), categories one-hot
    (sorted values; ``mean`` fills the most frequent, ``constant`` a value ``"missing"``)."""
    blocks: list[npt.NDArray[np.float64]] = []
    names: list[str] = []
    for col in schema:
        series = typed[col.name]
        holes = series.isna().to_numpy()
        if holes.any() and policy is MissingPolicy.REJECT:
            raise MissingValueError(
                f"{where}: feature column {col.name!r} has {int(holes.sum())} missing value(s) "
                'and missing = "reject" (the default). Fill them in, or set missing = "mean" '
                'or "constant" on the party in the job.'
            )
        if col.type.encoded is ColumnType.NUMBER:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            if holes.all():
                raise DataError(f"{where}: feature column {col.name!r} has no value at all")
            fill = float(np.nanmean(values)) if policy is MissingPolicy.MEAN else 0.0
            blocks.append(np.where(holes, fill, values)[:, None])
            names.append(col.name)
            continue
        texts = [str(v) for v in series.astype(object)]
        present = [t for t, hole in zip(texts, holes, strict=True) if not hole]
        fill_text = CONSTANT_CATEGORY_FILL
        if policy is MissingPolicy.MEAN and present:
            counts = Counter(present)
            top = max(counts.values())
            fill_text = min(t for t, c in counts.items() if c == top)
        filled = np.array([fill_text if hole else t for t, hole in zip(texts, holes, strict=True)])
        values_seen = sorted(set(filled.tolist()))
        blocks.append(np.stack([filled == v for v in values_seen], axis=1).astype(np.float64))
        names.extend(f"{col.name}={v}" for v in values_seen)
    return np.hstack(blocks), names


def select_rows(table: PartyTable, rows: npt.NDArray[np.int64]) -> PartyTable:
    """The table's rows ``rows``, in that order (e.g. the PSI-agreed order)."""
    labels = None if table.labels is None else table.labels[rows]
    return PartyTable(
        table.name, [table.ids[i] for i in rows], table.features[rows], table.feature_names, labels
    )
