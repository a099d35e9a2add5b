"""`fedsilo simulate` and `fedsilo query` read the same files alike (the one typed reader).

The same party files (pandas with missing values, a spreadsheet export, Parquet) and the same
declared columns: every party's row count in training (train + held-out examples) equals its
``COUNT(*)`` in an exact query, and both equal the rows written; a malformed number stops
both, naming the same party, file, column and row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import fedsilo
from fedsilo.cli import app
from fedsilo.errors import DataError
from tests.analytics.test_reader_matrix import job_file, party_frame, with_missing, write

WRITERS = ("pandas", "spreadsheet", "parquet")


def frames() -> list[pd.DataFrame]:
    out = []
    for seed, n in ((21, 30), (22, 17), (23, 25)):
        df = with_missing(party_frame(seed, n))
        df["default"] = np.where(df["amount"].fillna(0) > 150, "Yes", "No")
        out.append(df)
    return out


def training_job(tmp: Path, paths: list[Path]) -> dict[str, object]:
    cats = {c: "category" for c in ("smoker", "flag", "tf", "code", "visit")}
    return {
        "name": "reader",
        "rounds": 1,
        "data": {"label": "default", "missing": "mean", "columns": {**cats, "amount": "number"}},
        "model": {"name": "logreg"},
        "parties": [{"name": f"p{i}", "path": str(p)} for i, p in enumerate(paths)],
    }


def query_count(tmp: Path, path: Path) -> int:
    """COUNT(*) of one party's file by an exact query (a one-party analytics job)."""
    job = job_file(tmp, [path], skip=True)
    res = CliRunner().invoke(
        app,
        [
            "query",
            str(job),
            "SELECT COUNT(*) AS n FROM t",
            "--format",
            "json",
            "--ledgers",
            str(tmp / "ledgers"),
        ],
    )
    assert res.exit_code == 0, res.output
    return int(json.loads(res.stdout)["rows"][0]["answers"]["n"]["value"])


@pytest.mark.parametrize("writer", WRITERS)
def test_simulate_and_query_count_the_same_rows_per_party(tmp_path: Path, writer: str) -> None:
    written = frames()
    paths = [write(df, tmp_path / f"p{i}.csv", writer) for i, df in enumerate(written)]

    result = fedsilo.simulate(training_job(tmp_path, paths))

    for i, (path, df) in enumerate(zip(paths, written, strict=True)):
        party = result.setup.summary[f"p{i}"]
        trained = party["train_examples"] + party["holdout_examples"]
        (tmp_path / f"q{i}").mkdir()
        assert trained == query_count(tmp_path / f"q{i}", path) == len(df)
    plan = result.setup.plan
    assert plan is not None
    assert plan.categories["code"] == ("01", "02")  # not 1 and 2
    assert plan.categories["smoker"] == ("No", "Yes")
    assert plan.categories["flag"] == ("False", "True")  # text, never a boolean


def test_a_malformed_number_stops_simulate_and_query_alike(tmp_path: Path) -> None:
    written = frames()
    bad = written[1].astype({"amount": object})
    bad.loc[4, "amount"] = "1,234.50"  # data row 5
    written[1] = bad
    paths = [write(df, tmp_path / f"p{i}.csv", "pandas") for i, df in enumerate(written)]

    with pytest.raises(DataError) as err:
        fedsilo.simulate(training_job(tmp_path, paths))
    job = job_file(tmp_path, paths, skip=True)
    res = CliRunner().invoke(
        app,
        [
            "query",
            str(job),
            "SELECT AVG(amount) AS a FROM t",
            "--format",
            "json",
            "--ledgers",
            str(tmp_path / "ledgers"),
        ],
    )

    assert res.exit_code == 2
    for text in ("party 'p1'", str(paths[1]), "column 'amount'", "not a number", "row 5"):
        assert text in str(err.value), text
        assert text in " ".join(res.output.split()), text


def test_declared_booleans_and_dates_train_as_numbers(tmp_path: Path) -> None:
    written = frames()
    written[2]["smoker"] = written[2]["smoker"] == "Yes"  # a bool column: True/False (Parquet bool)
    paths = [
        write(df, tmp_path / f"p{i}.csv", w)
        for i, (df, w) in enumerate(zip(written, ["pandas", "spreadsheet", "parquet"], strict=True))
    ]
    job = training_job(tmp_path, paths)
    job["data"]["columns"].update(  # type: ignore[index]
        {"smoker": "boolean", "visit": {"type": "date", "format": "%d/%m/%Y"}}
    )

    result = fedsilo.simulate(job)

    plan = result.setup.plan
    assert plan is not None
    pooled = pd.concat(written, ignore_index=True)
    yes = pooled["smoker"].map(lambda v: v is True or v == "Yes")
    days = (pd.to_datetime(pooled["visit"], format="%d/%m/%Y") - pd.Timestamp("1970-01-01")).dt.days
    assert "smoker" in plan.feature_names and "visit" in plan.feature_names  # one number each
    assert plan.means["smoker"] == pytest.approx(yes.mean())
    assert plan.means["visit"] == pytest.approx(days.mean())
