"""Vertical parties' tables: loading a party's own file (or built-in split), selecting rows.

Alignment across parties is PSI relayed by the coordinator
(:meth:`fedsilo.vertical.runner.VerticalRunner.align`, the parties' side in
:mod:`fedsilo.vertical.agent`); there is no other alignment path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.data.tabular import frame_source, read_frame
from fedsilo.errors import DataError
from fedsilo.vertical.config import VerticalPartyConfig

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


def load_party_table(party: VerticalPartyConfig, given: object = None) -> PartyTable:
    """Read a party's file (CSV/Parquet), built-in split or given DataFrame, and check its
    columns (the same checks whatever the source)."""
    if given is not None:
        frame = read_frame(given, party=party.name)
        where = f"party {party.name!r} {frame_source(party.name)}"
    elif party.builtin is not None:
        frame = _builtin(party)
        where = f"party {party.name!r} (builtin {party.builtin})"
    elif party.path is None:
        raise DataError(
            f"party {party.name!r} has no data: give it a path or a builtin in [[parties]], "
            f"or pass its rows as a DataFrame, fedsilo.simulate(job, data={{{party.name!r}: df}})"
        )
    else:
        path = Path(party.path)
        where = f"party {party.name!r} file {path}"
        if not path.exists():
            raise DataError(f"{where} does not exist")
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{where} cannot be read: {exc}") from exc
    for column in (party.id_column, party.label):
        if column is not None and column not in frame.columns:
            raise DataError(f"{where} has no column {column!r}; columns: {list(frame.columns)}")
    names = party.features or [c for c in frame.columns if c not in (party.id_column, party.label)]
    missing = [c for c in names if c not in frame.columns]
    if missing or not names:
        raise DataError(f"{where}: feature columns {missing or names} are missing or empty")
    for column in names:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise DataError(f"{where}: feature column {column!r} is not numeric")
        if frame[column].isna().any():
            raise DataError(f"{where}: feature column {column!r} has missing values")
    labels = None
    if party.label is not None:
        values = frame[party.label]
        if values.isna().any() or not set(values.unique()) <= {0, 1}:
            raise DataError(f"{where}: label column {party.label!r} must hold only 0 and 1")
        labels = values.to_numpy(dtype=np.float64)
    return PartyTable(
        party.name,
        frame[party.id_column].tolist(),
        frame[names].to_numpy(dtype=np.float64),
        list(names),
        labels,
    )


def select_rows(table: PartyTable, rows: npt.NDArray[np.int64]) -> PartyTable:
    """The table's rows ``rows``, in that order (e.g. the PSI-agreed order)."""
    labels = None if table.labels is None else table.labels[rows]
    return PartyTable(
        table.name, [table.ids[i] for i in rows], table.features[rows], table.feature_names, labels
    )
