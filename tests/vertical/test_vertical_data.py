"""Vertical parties read their files with the one typed reader; data checks come before crypto.

A host file holding the guest's label column, or a customer ID on two rows, is refused before
any PSI message; a Yes/No label trains once its positive class is declared (and without it the
error lists the values found); a host with a missing value and a categorical column trains
under the declared missing policy, encoding its own columns (fills from its training rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fedsilo
from fedsilo.errors import DataError, MissingValueError
from fedsilo.simulation import Progress
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.data import load_party_table
from fedsilo.vertical.hetero_lr.party import LrPart
from fedsilo.vertical.result import VerticalResult


def files(tmp: Path, breast_files: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    guest, host = (pd.read_csv(p) for p in breast_files)
    guest["y"] = np.where(guest["y"] == 1, "Yes", "No")
    regions = np.array(["north", "south", "east"])
    host["region"] = regions[np.arange(len(host)) % 3]  # a categorical host column
    host.loc[[3, 8], "x5"] = np.nan  # missing values in a host number column
    return guest, host


def job(
    tmp: Path,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    *,
    guest: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    frames[0].to_csv(tmp / "guest.csv", index=False)
    frames[1].to_csv(tmp / "host.csv", index=False)
    parties = [
        {"name": "bank", "path": str(tmp / "guest.csv"), "label": "y", **(guest or {})},
        {"name": "shop", "path": str(tmp / "host.csv"), **(host or {})},
    ]
    return {
        "kind": "vertical",
        "name": "typed",
        "seed": 3,
        "parties": parties,
        "he": {"scheme": "ckks"},
        "hetero_lr": {"epochs": 1, "batch_size": 256},
    }


def test_a_label_column_in_a_host_file_is_refused_before_psi(
    tmp_path: Path, breast_files: tuple[Path, Path]
) -> None:
    guest, host = files(tmp_path, breast_files)
    host = host.merge(guest[["id", "y"]], on="id", how="left").fillna({"y": "No"})
    steps: list[str] = []
    cfg = job(tmp_path, (guest, host), guest={"label_positive": "Yes"}, host={"missing": "mean"})

    with pytest.raises(DataError) as err:
        fedsilo.simulate(cfg, progress=Progress(on_psi_step=lambda s, *_: steps.append(s)))

    text = str(err.value)
    assert "party 'shop'" in text and "host.csv" in text
    assert "column named 'y', like the guest's label" in text
    assert steps == []  # no PSI step ran


def test_a_repeated_customer_id_is_refused_at_psi_open_before_any_psi_message(
    tmp_path: Path, breast_files: tuple[Path, Path]
) -> None:
    """IDs are checked when the job opens, like the rest of the file: ' P0003' and 'p0003'
    are one customer after normalization."""
    guest, host = files(tmp_path, breast_files)
    host.loc[1, "id"] = " " + host.loc[4, "id"].lower()
    steps: list[str] = []
    cfg = job(tmp_path, (guest, host), guest={"label_positive": "Yes"}, host={"missing": "mean"})

    with pytest.raises(DataError) as err:
        fedsilo.simulate(cfg, progress=Progress(on_psi_step=lambda s, *_: steps.append(s)))

    text = str(err.value)
    assert "vertical job 'typed', psi_open: party 'shop', column 'id'" in text
    assert "1 ID(s) appear on more than one row after normalization" in text
    assert "de-duplicate the data" in text and "DuplicatePolicy" in text
    assert steps == []  # no PSI step ran


def test_yes_no_label_needs_label_positive_and_then_trains(
    tmp_path: Path, breast_files: tuple[Path, Path]
) -> None:
    guest, host = files(tmp_path, breast_files)
    host_ok = {"missing": "mean"}

    with pytest.raises(DataError) as err:
        fedsilo.simulate(job(tmp_path, (guest, host), host=host_ok))
    assert "label column 'y' holds 'No', 'Yes'" in str(err.value)
    assert 'label_positive = "Yes"' in str(err.value)

    result = fedsilo.simulate(
        job(tmp_path, (guest, host), guest={"label_positive": "Yes"}, host=host_ok)
    )
    assert result.final_global["auc"] > 0.9  # Yes (benign) is learnt as the positive class
    # an attribute, as on a horizontal result: one entry per epoch
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))


def test_missing_values_and_a_categorical_host_column_follow_the_declared_policy(
    tmp_path: Path, breast_files: tuple[Path, Path]
) -> None:
    guest, host = files(tmp_path, breast_files)
    cfg = job(tmp_path, (guest, host), guest={"label_positive": "Yes"})

    with pytest.raises(MissingValueError, match=r"party 'shop'.*'x5' has 2 missing value"):
        fedsilo.simulate(cfg)

    declared = {"missing": "mean", "columns": {"region": "category"}}
    cfg = job(tmp_path, (guest, host), guest={"label_positive": "Yes"}, host=declared)
    table = load_party_table(parse_vertical_job(cfg).parties[1])
    assert table.feature_names[-3:] == ["region=east", "region=north", "region=south"]
    x5 = table.feature_names.index("x5")
    assert np.isnan(table.features[3, x5])  # filled once the training rows are known
    assert table.features[:, -3:].sum(axis=1).tolist() == [1.0] * len(host)  # one-hot
    result = fedsilo.simulate(cfg)
    assert result.final_global["auc"] > 0.9

    # The fill is the mean of the party's training rows (as its standardization is), not of
    # every row of its file: held-out customers do not shape the model.
    assert isinstance(result, VerticalResult) and result.heldout_scores is not None
    paths = result.save(tmp_path / "run")
    part = LrPart.load(paths["model"] / "shop.safetensors", "shop")
    fill = {c.name: c.fill for c in part.encoding.columns}
    train = (set(guest["id"]) & set(host["id"])) - set(result.heldout_scores)
    assert fill["x5"] == pytest.approx(host.loc[host["id"].isin(train), "x5"].mean(), rel=1e-12)
    assert fill["x5"] != pytest.approx(host["x5"].mean(), rel=1e-9)
    counts = host.loc[host["id"].isin(train), "region"].value_counts()
    assert fill["region"] == min(counts[counts == counts.max()].index)  # ties: first sorted
