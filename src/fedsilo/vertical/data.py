"""Vertical parties' tables: loading, PSI alignment across guest and hosts, held-out split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.errors import DataError
from fedsilo.runtime.seeds import derive_seed
from fedsilo.vertical.config import VerticalJobConfig, VerticalPartyConfig
from fedsilo.vertical.psi import RevealTo, align_in_process

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


def load_party_table(party: VerticalPartyConfig) -> PartyTable:
    """Read a party's file (CSV/Parquet) or built-in split and check its columns."""
    if party.path is None:
        frame = _builtin(party)
        where = f"party {party.name!r} (builtin {party.builtin})"
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


def align(job: VerticalJobConfig, tables: dict[str, PartyTable]) -> AlignedData:
    """PSI between the guest (client) and each host (server); keep rows shared by all.

    With the job seed the agreed order is a keyed pseudo-random order in which a customer's
    position does not depend on who else is present, so the guest can intersect the
    pairwise results and tell each host which of its aligned positions to keep.
    """
    guest = job.guest
    g_table = tables[guest.name]
    kept: npt.NDArray[np.int64] | None = None
    pairwise: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
    for host in job.hosts:
        client, server = align_in_process(
            g_table.ids,
            tables[host.name].ids,
            reveal=RevealTo.BOTH,
            client_party=guest.name,
            server_party=host.name,
            client_column=guest.id_column,
            server_column=host.id_column,
            fpr=job.psi.fpr,
            batch_size=job.psi.batch_size,
            seed=job.seed,
        )
        pairwise[host.name] = (client.indices, server.indices)
        kept = client.indices if kept is None else kept[np.isin(kept, client.indices)]
    assert kept is not None
    if len(kept) < 10:
        raise DataError(
            f"only {len(kept)} customers are shared by all parties; check the ID columns"
        )
    aligned = {guest.name: select_rows(g_table, kept)}
    for host in job.hosts:
        g_idx, h_idx = pairwise[host.name]
        keep = np.isin(g_idx, kept)  # the guest tells the host which positions survive
        aligned[host.name] = select_rows(tables[host.name], h_idx[keep])
    rng = np.random.default_rng(derive_seed(job.seed, "vertical/test_split"))
    perm = rng.permutation(len(kept))
    n_test = max(1, round(job.test_fraction * len(kept)))
    return AlignedData(
        aligned,
        np.sort(perm[n_test:]),
        np.sort(perm[:n_test]),
        {name: len(t.ids) for name, t in tables.items()},
    )


def select_rows(table: PartyTable, rows: npt.NDArray[np.int64]) -> PartyTable:
    """The table's rows ``rows``, in that order (e.g. the PSI-agreed order)."""
    labels = None if table.labels is None else table.labels[rows]
    return PartyTable(
        table.name, [table.ids[i] for i in rows], table.features[rows], table.feature_names, labels
    )


def load_aligned(job: VerticalJobConfig) -> AlignedData:
    return align(job, {p.name: load_party_table(p) for p in job.parties})
