"""A vertical party's encoding: learnt from its training file and rows, applied as saved.

Category values come from the training file (plus "missing" under missing = "constant", so a
later missing value encodes); ``mean`` fills from the training rows only (ties: the first
value in sorted order); the encoding survives its JSON round trip (the part format) and
encodes a one-row batch exactly as that row within any other batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from fedsilo.data.tabular import ColumnSchema, ColumnType, MissingPolicy
from fedsilo.errors import DataError, MissingValueError
from fedsilo.vertical.encoding import FeatureColumn, PartyEncoding

SCHEMA = [ColumnSchema("age", ColumnType.NUMBER), ColumnSchema("city", ColumnType.CATEGORY)]


def frame(ages: list[float | None], cities: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {"age": pd.Series(ages, dtype="float64"), "city": pd.Series(cities, dtype=object)}
    )


def trained(policy: MissingPolicy, train: list[int]) -> PartyEncoding:
    typed = frame([30.0, None, 50.0, 70.0, 1000.0], ["Lyon", "Paris", None, "Paris", "Nice"])
    encoding = PartyEncoding.of_training_file(typed, SCHEMA, policy, listed=False, label=None)
    features = encoding.encode(typed, where="party 'a'")
    return encoding.fit(features[train], where="party 'a'")


def test_mean_fills_come_from_the_training_rows_only() -> None:
    encoding = trained(MissingPolicy.MEAN, train=[0, 1, 2, 3])  # row 4 (1000, Nice) held out

    fills = {c.name: c.fill for c in encoding.columns}

    assert fills == {"age": pytest.approx(50.0), "city": "Paris"}
    assert encoding.columns[1].categories == ["Lyon", "Nice", "Paris"]  # the file's values


def test_a_tie_for_the_most_frequent_value_goes_to_the_first_in_sorted_order() -> None:
    encoding = trained(MissingPolicy.MEAN, train=[0, 1, 4])  # Lyon, Paris, Nice once each

    assert encoding.columns[1].fill == "Lyon"


def test_constant_gives_every_category_column_the_value_missing_so_later_holes_encode() -> None:
    encoding = trained(MissingPolicy.CONSTANT, train=[0, 1, 2, 3])
    clean = frame([30.0], ["Lyon"])
    training = PartyEncoding.of_training_file(
        clean, SCHEMA, MissingPolicy.CONSTANT, listed=False, label=None
    )

    assert training.columns[1].categories == ["Lyon", "missing"]  # no hole in training
    assert encoding.feature_names == ["age", "city=Lyon", "city=Nice", "city=Paris", "city=missing"]
    row = encoding.encode(frame([None], [None]), where="x", run="r")
    assert row.tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]


def test_a_row_encodes_the_same_alone_or_in_any_batch_after_a_json_round_trip() -> None:
    saved = PartyEncoding.model_validate_json(
        trained(MissingPolicy.MEAN, train=[0, 1, 2, 3]).model_dump_json()
    )
    alone = saved.encode(frame([None], [None]), where="x", run="r")
    batch = saved.encode(frame([1e6, None, 2e6], ["Nice", None, "Nice"]), where="x", run="r")

    assert alone.tolist() == [[pytest.approx(50.0), 0.0, 0.0, 1.0]]
    np.testing.assert_array_equal(batch[1], alone[0])


def test_scoring_refuses_an_unseen_value_and_a_hole_under_reject_naming_the_run() -> None:
    typed = frame([30.0, 40.0], ["Lyon", "Paris"])
    encoding = PartyEncoding.of_training_file(
        typed, SCHEMA, MissingPolicy.REJECT, listed=False, label=None
    )

    with pytest.raises(DataError, match=r"'city' has value 'Rome' \(row 2\).*run 'r'"):
        encoding.encode(frame([1.0, 2.0], ["Lyon", "Rome"]), where="party 'a' file f", run="r")
    with pytest.raises(MissingValueError) as err:
        encoding.encode(frame([1.0, None], ["Lyon", "Paris"]), where="party 'a' file f", run="r")
    assert "(first: row 2)" in str(err.value) and "training run 'r'" in str(err.value)


def test_mean_with_no_value_in_the_training_rows_is_refused() -> None:
    with pytest.raises(DataError, match=r"'age' has no value in the party's 1 training rows"):
        trained(MissingPolicy.MEAN, train=[1])


def test_an_encoding_that_does_not_hold_together_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a category"):
        FeatureColumn(name="c", type=ColumnType.CATEGORY, categories=["a"], fill="b")
    with pytest.raises(ValidationError, match="fills nothing"):
        PartyEncoding(columns=[FeatureColumn(name="n", type=ColumnType.NUMBER, fill=0.0)])
