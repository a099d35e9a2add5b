"""Scoring encodes new customers as the training run did, from the parties' saved parts.

Acceptance: a customer's score does not depend on the other customers of its batch (missing
values get the training rows' fills, not the batch's mean), and equals the score of the same
customer with those fills written out; a batch whose customers all share one category value,
or whose number column is empty, scores as the same customers do in a mixed batch; a
category value the training data did not have is refused naming party, file, column, value
and row; a party's file whose columns are not the trained ones is refused, except columns
training also ignored (the guest's label; columns not among listed features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedsilo.errors import DataError
from fedsilo.jobs import parse_job
from fedsilo.vertical.config import VerticalScoreJob
from fedsilo.vertical.encoding import PartyEncoding
from fedsilo.vertical.hetero_lr.party import LrPart
from fedsilo.vertical.sb_role import SbPart
from fedsilo.vertical.scoring import simulate_vertical_score
from fedsilo.vertical.simulation import simulate_vertical

SECTIONS = {
    "hetero_lr": {"hetero_lr": {"epochs": 1, "batch_size": 128, "learning_rate": 0.3}},
    "secureboost": {"secureboost": {"n_trees": 2, "max_depth": 2, "n_bins": 8}},
}
GUEST_FEATURES = [f"x{j}" for j in range(10)] + ["segment"]


def _training_frames(breast_files: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The breast-cancer split with a category column and missing values at each party; the
    bank's file also has a column its job does not list (``notes``)."""
    guest, host = (pd.read_csv(p) for p in breast_files)
    guest["segment"] = np.where(np.arange(len(guest)) % 2 == 0, "a", "b")
    guest.loc[2, "segment"] = None
    guest["notes"] = "free text"
    host["region"] = np.array(["north", "south", "east"])[np.arange(len(host)) % 3]
    host.loc[5, "region"] = None
    host.loc[[3, 8], "x5"] = np.nan
    return guest, host


@pytest.fixture(scope="module")
def trained(
    breast_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One run per algorithm (Paillier: exact scores), both parties with missing = "mean"."""
    root = tmp_path_factory.mktemp("encoded")
    guest, host = _training_frames(breast_files)
    guest.to_csv(root / "bank.csv", index=False)
    host.to_csv(root / "provider.csv", index=False)
    runs: dict[str, Any] = {"guest": guest, "host": host}
    for algorithm in ("hetero_lr", "secureboost"):
        job = parse_job(
            {
                "kind": "vertical",
                "name": algorithm,
                "seed": 3,
                "algorithm": algorithm,
                "parties": [
                    {
                        "name": "bank",
                        "path": str(root / "bank.csv"),
                        "label": "y",
                        "features": GUEST_FEATURES,
                        "missing": "mean",
                    },
                    {"name": "provider", "path": str(root / "provider.csv"), "missing": "mean"},
                ],
                "he": {"scheme": "paillier", "key_bits": 1024},
                **SECTIONS[algorithm],
            }
        )
        simulate_vertical(job).save(root / algorithm)  # type: ignore[arg-type]
        runs[algorithm] = root / algorithm
    return runs


def _encodings(run: Path, algorithm: str) -> dict[str, PartyEncoding]:
    if algorithm == "hetero_lr":
        return {p: LrPart.load(run / "models" / f"{p}.safetensors", p).encoding for p in PARTIES}
    return {p: SbPart.load(run / "models" / f"{p}.json", p).encoding for p in PARTIES}


PARTIES = ("bank", "provider")


def _score(run: Path, root: Path, name: str, bank: pd.DataFrame, provider: pd.DataFrame) -> Any:
    """Score the two files; the guest's scores by customer ID."""
    folder = root / name
    folder.mkdir()
    bank.to_csv(folder / "bank.csv", index=False)
    provider.to_csv(folder / "provider.csv", index=False)
    job = parse_job(
        {
            "kind": "vertical-score",
            "name": "scores",
            "run": str(run),
            "parties": [
                {"name": "bank", "path": str(folder / "bank.csv")},
                {"name": "provider", "path": str(folder / "provider.csv")},
            ],
        }
    )
    assert isinstance(job, VerticalScoreJob)
    result = simulate_vertical_score(job)
    assert result.guest is not None and result.guest.predictions is not None
    _, ids, scores = result.guest.predictions
    return dict(zip(ids, scores.tolist(), strict=True))


def _fills(encoding: PartyEncoding) -> dict[str, Any]:
    return {c.name: c.fill for c in encoding.columns}


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_a_customers_score_does_not_depend_on_the_other_customers_of_its_batch(
    trained: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    run, guest, host = trained[algorithm], trained["guest"], trained["host"]
    fills = {p: _fills(e) for p, e in _encodings(run, algorithm).items()}
    clean = guest.dropna()["id"]
    shared = [i for i in host.dropna()["id"] if i in set(clean)]
    north = [i for i in shared if host.set_index("id").loc[i, "region"] == "north"][:15]
    mixed = [i for i in shared if i not in north][:30]
    blank = mixed.pop()  # every value of this customer is missing, at both parties
    bank = guest.set_index("id").drop(columns="y")
    provider = host.set_index("id")
    bank.loc[blank, GUEST_FEATURES] = None
    provider.loc[blank] = None
    # Batch A: the customers as they are (the bank's file keeps its label column and its
    # unlisted notes: both columns its training run ignored too).
    with_label = bank.assign(y=guest.set_index("id")["y"]).loc[[blank, *north, *mixed]]
    a = _score(
        run,
        tmp_path,
        "a",
        with_label.reset_index(),
        provider.loc[[blank, *north, *mixed]].reset_index(),
    )
    # Batch B: the same blank customer among customers whose numbers are 100 times larger
    # (the batch's means would move far), and one whose values are the saved fills.
    others_b, others_p = bank.loc[mixed].copy(), provider.loc[mixed].copy()
    numbers_b, numbers_p = GUEST_FEATURES[:-1], [f"x{j}" for j in range(20)]
    others_b[numbers_b] *= 100.0
    others_p[numbers_p] *= 100.0
    explicit_b = pd.DataFrame([fills["bank"]], index=pd.Index(["EXPLICIT"], name="id"))
    explicit_p = pd.DataFrame([fills["provider"]], index=pd.Index(["EXPLICIT"], name="id"))
    b = _score(
        run,
        tmp_path,
        "b",
        pd.concat([bank.loc[[blank]], others_b, explicit_b.assign(notes="x")]).reset_index(),
        pd.concat([provider.loc[[blank]], others_p, explicit_p]).reset_index(),
    )

    assert a[blank] == b[blank] == b["EXPLICIT"]  # the training rows' fills, in any batch
    assert a[mixed[0]] != b[mixed[0]]  # (the scaled customers do score differently)


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_a_batch_of_one_category_with_an_empty_number_column_scores_as_in_a_mixed_batch(
    trained: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    """Every customer has region = north and no x3: the columns keep their training types and
    values (no 'region=east' column goes missing, x3 stays a number filled as in training)."""
    run, guest, host = trained[algorithm], trained["guest"], trained["host"]
    x3_fill = _fills(_encodings(run, algorithm)["provider"])["x3"]
    provider = host.set_index("id")
    bank = guest.set_index("id").drop(columns="y")
    north = [i for i in provider.dropna().index if provider.loc[i, "region"] == "north"]
    north = [i for i in north if i in set(bank.dropna().index)][:12]
    rest = [i for i in provider.dropna().index if i in set(bank.dropna().index)][-20:]
    mixed = provider.loc[north + rest].copy()
    mixed.loc[north, "x3"] = x3_fill
    only_north = provider.loc[north].copy()
    only_north["x3"] = None

    a = _score(run, tmp_path, "mixed", bank.loc[north + rest].reset_index(), mixed.reset_index())
    n = _score(run, tmp_path, "north", bank.loc[north].reset_index(), only_north.reset_index())

    assert set(n) == set(north)
    assert all(n[i] == a[i] for i in north)


def test_an_unseen_category_is_refused_naming_party_file_column_value_and_row(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    run, guest, host = trained["hetero_lr"], trained["guest"], trained["host"]
    provider = host.head(30).copy()
    provider.loc[[4, 9], "region"] = "west"

    with pytest.raises(DataError) as err:
        _score(run, tmp_path, "west", guest.drop(columns="y"), provider)

    text = str(err.value)
    assert "scoring job 'scores' (trained run 'hetero_lr'), psi_open" in text
    assert "party 'provider' file" in text and "provider.csv" in text
    assert "column 'region' has value 'west' (row 5 and 1 more row(s))" in text
    assert "Known values: 'east', 'north', 'south'" in text


def test_columns_the_party_did_not_train_with_are_refused_unless_training_ignored_them(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    run, guest, host = trained["hetero_lr"], trained["guest"], trained["host"]
    bank = guest.drop(columns="y")

    # The provider's file gains a column: every column but the ID was a provider feature.
    with pytest.raises(DataError) as err:
        _score(run, tmp_path, "extra", bank, host.assign(score_2023=1.0))
    text = str(err.value)
    assert "party 'provider' file" in text and "unexpected 'score_2023'" in text
    assert "missing" not in text

    # The bank is pointed at the provider's file: the bank listed its features, so the
    # provider's other columns would be ignored, but its 'segment' is not there.
    with pytest.raises(DataError) as err:
        _score(run, tmp_path, "swapped", host, host)
    text = str(err.value)
    assert "party 'bank' file" in text and "missing 'segment'" in text
    assert "unexpected" not in text and "another party's" in text
