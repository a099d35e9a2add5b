"""fedsilo.simulate(job, data={party: DataFrame}): rows from Python, checked as files are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fedsilo
from fedsilo.errors import ConfigError, DataError, FedsiloError, MissingValueError, SchemaError
from tests.conftest import bank_frame, small_job

BANKS = ("bank-a", "bank-b")


def _job(parties: list[dict[str, Any]], **data: Any) -> dict[str, Any]:
    job = small_job(
        rounds=2, data={"label": "default", "id": "customer_id", **data}, parties=parties
    )
    for key in ("dataset", "num_parties", "partition"):
        del job["data"][key]
    return job


def _frames() -> dict[str, pd.DataFrame]:
    return {name: bank_frame(60, i) for i, name in enumerate(BANKS)}


def test_dataframes_train_the_model_their_files_train(tmp_path: Path) -> None:
    frames = _frames()
    files = []
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        files.append({"name": name, "path": str(tmp_path / f"{name}.parquet")})
    from_files = fedsilo.simulate(_job(files)).save(tmp_path / "files")
    named = _job([{"name": n} for n in BANKS])
    result = fedsilo.simulate(named, data=frames)
    from_frames = result.save(tmp_path / "frames")
    assert from_frames["model"].read_bytes() == from_files["model"].read_bytes()
    # a dict job without parties takes them from the DataFrames' names
    implicit = _job([])
    del implicit["parties"]
    again = fedsilo.simulate(implicit, data=frames)
    assert list(again.setup.parties) == list(BANKS)
    assert all(np.array_equal(again.params[k], v) for k, v in result.params.items())
    for name in frames:  # the caller's frames are untouched
        assert list(frames[name].columns) == ["customer_id", "income", "region", "default"]


def test_a_dataframe_job_model_scores_new_rows(tmp_path: Path) -> None:
    result = fedsilo.simulate(_job([{"name": n} for n in BANKS]), data=_frames())
    result.save(tmp_path)
    new = bank_frame(5, 9)
    got = fedsilo.load_model(tmp_path).predictions(new)
    assert list(got["customer_id"]) == list(new["customer_id"])


def test_dataframes_meet_the_schema_checks_files_meet() -> None:
    parties = [{"name": n} for n in BANKS]
    frames = _frames()
    text = frames["bank-b"].assign(income=frames["bank-b"]["income"].astype(object))
    text.loc[4, "income"] = "n/a"
    # one malformed value does not turn the column into categories (its numbers would be
    # category names shared with the coordinator): the party refuses, naming row and value
    with pytest.raises(
        SchemaError,
        match=r"party 'bank-b' column 'income' \(DataFrame data\['bank-b'\]\) looks numeric "
        r"\(59 of 60 values are numbers\), but row 5 holds 'n/a'",
    ):
        fedsilo.simulate(_job(parties), data={**frames, "bank-b": text})
    declared = _job(parties, columns={"income": "number"})
    with pytest.raises(
        DataError, match=r"party 'bank-b' column 'income' .*is not a number \(row 5"
    ):
        fedsilo.simulate(declared, data={**frames, "bank-b": text})

    renamed = frames["bank-a"].rename(columns={"region": "area"})
    with pytest.raises(SchemaError, match=r"(?s)lacks column 'area'.*has extra column 'region'"):
        fedsilo.simulate(_job(parties), data={**frames, "bank-a": renamed})

    holes = frames["bank-a"].copy()
    holes.loc[[2, 7], "income"] = np.nan
    with pytest.raises(MissingValueError, match=r"party 'bank-a' column 'income': 2 of 60"):
        fedsilo.simulate(_job(parties), data={**frames, "bank-a": holes})
    imputed = fedsilo.simulate(_job(parties, missing="mean"), data={**frames, "bank-a": holes})
    assert len(imputed.history) == 2  # the declared policy imputes what reject refused

    no_label = frames["bank-a"].drop(columns=["default"])
    with pytest.raises(DataError, match=r"party 'bank-a': label column 'default'"):
        fedsilo.simulate(_job(parties), data={**frames, "bank-a": no_label})


def test_dataframes_for_unknown_or_missing_parties_are_refused(tmp_path: Path) -> None:
    frames = _frames()
    with pytest.raises(ConfigError, match=r"'bank-z', which is not a party"):
        fedsilo.simulate(
            _job([{"name": n} for n in BANKS]), data={**frames, "bank-z": frames["bank-a"]}
        )
    with pytest.raises(ConfigError, match=r"party 'bank-b' has no data"):
        fedsilo.simulate(_job([{"name": n} for n in BANKS]), data={"bank-a": frames["bank-a"]})
    with pytest.raises(ConfigError, match=r"data\['bank-a'\] is a list, expected a pandas"):
        fedsilo.simulate(_job([{"name": n} for n in BANKS]), data={**frames, "bank-a": [1, 2]})
    builtin = small_job()
    with pytest.raises(ConfigError, match="not a party of job"):
        fedsilo.simulate(builtin, data={"party-1": frames["bank-a"]})


# -- vertical -----------------------------------------------------------------------------


def _vertical_frames() -> dict[str, pd.DataFrame]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    ids = [f"id{i}" for i in range(len(data.target))]
    guest = pd.DataFrame(data.data[:, :10], columns=[f"x{j}" for j in range(10)])
    guest.insert(0, "id", ids)
    guest["y"] = data.target
    host = pd.DataFrame(data.data[:, 10:], columns=[f"x{j}" for j in range(10, 30)])
    host.insert(0, "id", ids)
    return {"bank": guest, "shop": host.iloc[::-1].iloc[:500]}  # other order, fewer ids


def _vertical_job(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "vertical",
        "name": "frames",
        "parties": [{"name": "bank", "label": "y"}, {"name": "shop"}],
        "hetero_lr": {"epochs": 2},
        **extra,
    }


def test_a_vertical_job_trains_on_dataframes() -> None:
    result = fedsilo.simulate(_vertical_job(), data=_vertical_frames())
    assert result.alignment["aligned"] == 500
    assert result.final_global["auc"] > 0.9


def test_vertical_dataframes_meet_the_checks_files_meet() -> None:
    frames = _vertical_frames()
    bad = frames["shop"].assign(x12=frames["shop"]["x12"].astype(str))
    bad.iloc[2, bad.columns.get_loc("x12")] = "1,5"  # a decimal comma in a declared number
    parties = [{"name": "bank", "label": "y"}, {"name": "shop", "columns": {"x12": "number"}}]
    with pytest.raises(
        FedsiloError,
        match=r"party 'shop' column 'x12' \(DataFrame data\['shop'\]\) is not a number \(row 3",
    ):
        fedsilo.simulate(_vertical_job(parties=parties), data={**frames, "shop": bad})
    with pytest.raises(FedsiloError, match=r"no column 'id'"):
        fedsilo.simulate(
            _vertical_job(), data={**frames, "shop": frames["shop"].drop(columns="id")}
        )
    with pytest.raises(ConfigError, match=r"'retailer', which is not a party"):
        fedsilo.simulate(_vertical_job(), data={**frames, "retailer": frames["shop"]})
    with pytest.raises(FedsiloError, match=r"party 'shop' has no data"):
        fedsilo.simulate(_vertical_job(), data={"bank": frames["bank"]})


def test_dataframes_are_refused_with_ray_before_any_work() -> None:
    # Ray hosts rebuild their parties from the job's own data source, never from this
    # process's frames: asking for both is refused up front (no Ray needed to see it).
    named = _job([{"name": n} for n in BANKS])
    with pytest.raises(ConfigError, match="write the frames to files"):
        fedsilo.simulate(named, data=_frames(), ray="auto")
