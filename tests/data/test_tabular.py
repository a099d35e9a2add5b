"""Reading a party's table, inferring its schema, and checking parties agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedsilo.data.tabular import (
    ColumnSchema,
    ColumnType,
    TableSchema,
    check_schemas,
    describe_table,
    infer_schema,
    read_party_table,
    value_text,
)
from fedsilo.errors import ConfigError, DataError, ProtocolError, SchemaError

NUM, CAT = ColumnType.NUMBER, ColumnType.CATEGORY


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [101, 102, 103],
            "age": [34, 51, 27],
            "income": [52_000.5, 61_250.0, 38_900.25],
            "city": ["Lyon", "Paris", "Lyon"],
            "defaulted": ["no", "yes", "no"],
        }
    )


def schema(*cols: tuple[str, ColumnType], label: str = "defaulted") -> TableSchema:
    return TableSchema(tuple(ColumnSchema(n, t) for n, t in cols), label)


def infer(df: pd.DataFrame, **kw: object) -> TableSchema:
    args: dict[str, object] = {
        "label": "defaulted",
        "id_column": None,
        "declared": None,
        "party": "bank-a",
        "source": "data/bank_a.csv",
    }
    args.update(kw)
    return infer_schema(df, **args)  # type: ignore[arg-type]


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_files_round_trip_to_the_same_table_and_schema(
    tmp_path: Path, suffix: str
) -> None:
    df = frame()
    path = tmp_path / f"bank_a{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)

    got = read_party_table(path, party="bank-a")

    assert list(got.columns) == list(df.columns)
    for col in df.columns:
        assert [value_text(v) for v in got[col]] == [value_text(v) for v in df[col]]
    assert infer(got, id_column="customer_id") == schema(
        ("age", NUM), ("income", NUM), ("city", CAT)
    )


def test_missing_file_names_party_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match=r"party 'bank-b'.*nowhere\.csv.*does not exist"):
        read_party_table(path, party="bank-b")


def test_unknown_suffix_names_party_path_and_the_accepted_types(tmp_path: Path) -> None:
    path = tmp_path / "bank.xlsx"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"party 'bank-b'.*bank\.xlsx.*\.csv or \.parquet"):
        read_party_table(path, party="bank-b")


def test_corrupt_parquet_file_is_a_data_error_naming_party_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bank.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"party 'bank-c'.*bank\.parquet.*Parquet"):
        read_party_table(path, party="bank-c")


def test_empty_csv_file_is_a_data_error_saying_the_header_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"party 'bank-c'.*bank\.csv.*empty"):
        read_party_table(path, party="bank-c")


def test_directory_instead_of_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "folder.csv"
    path.mkdir()
    with pytest.raises(DataError, match=r"not a file"):
        read_party_table(path, party="bank-c")


# -- inference ----------------------------------------------------------------------------


def test_numbers_are_number_text_and_booleans_are_category() -> None:
    df = pd.DataFrame(
        {
            "n_int": [1, 2],
            "n_float": [1.5, np.nan],
            "n_object": pd.Series([1, 2.5], dtype=object),
            "text": ["a", "b"],
            "flag": [True, False],
            "cat": pd.Categorical(["u", "v"]),
            "defaulted": [0, 1],
        }
    )
    assert infer(df) == schema(
        ("n_int", NUM),
        ("n_float", NUM),
        ("n_object", NUM),
        ("text", CAT),
        ("flag", CAT),
        ("cat", CAT),
    )


def test_id_column_is_dropped_and_label_is_not_a_feature() -> None:
    got = infer(frame(), id_column="customer_id")
    assert "customer_id" not in got.names
    assert "defaulted" not in got.names
    assert got.label == "defaulted"


def test_named_id_column_that_is_missing_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"party 'bank-a'.*id column 'client'.*data\.id"):
        infer(frame(), id_column="client")


def test_missing_label_column_names_party_file_label_key_and_lists_columns() -> None:
    with pytest.raises(DataError) as err:
        infer(frame(), label="target")
    text = str(err.value)
    assert "party 'bank-a'" in text
    assert "data/bank_a.csv" in text
    assert "'target'" in text and "data.label" in text
    for col in frame().columns:
        assert repr(col) in text


def test_declared_types_win_over_inference() -> None:
    got = infer(frame(), declared={"age": CAT, "income": NUM})
    assert got.type_of("age") is CAT
    assert got.type_of("income") is NUM


def test_text_in_declared_number_column_names_party_column_file_and_row(tmp_path: Path) -> None:
    incomes = [str(1000 + i) for i in range(20)]
    incomes[16] = "12k"  # data row 17
    path = tmp_path / "bank_b.csv"
    pd.DataFrame({"income": incomes, "defaulted": ["no"] * 20}).to_csv(path, index=False)
    df = read_party_table(path, party="bank-b")

    with pytest.raises(SchemaError) as err:
        infer(df, declared={"income": NUM}, party="bank-b", source=str(path))
    text = str(err.value)
    assert "party 'bank-b' column 'income' is text, expected number" in text
    assert str(path) in text and "row 17" in text
    assert "categorical" in text
    assert "12k" not in text  # cells are not quoted: messages cross the wire


def test_declared_column_absent_from_the_file_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"party 'bank-a'.*declares column 'salary'"):
        infer(frame(), declared={"salary": NUM})


def test_declaring_the_label_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"label column 'defaulted'"):
        infer(frame(), declared={"defaulted": CAT})


def test_date_columns_must_be_declared() -> None:
    df = frame().assign(opened=pd.to_datetime(["2020-01-01", "2021-02-03", "2022-03-04"]))
    with pytest.raises(SchemaError, match=r"column 'opened'.*datetime"):
        infer(df)
    assert infer(df, declared={"opened": CAT}).type_of("opened") is CAT


def test_describe_reveals_only_names_and_types() -> None:
    described = describe_table(
        frame(), label="defaulted", id_column="customer_id", party="bank-a", source="x.csv"
    )
    text = json.dumps(described)
    assert described == {
        "label": "defaulted",
        "columns": [
            {"name": "age", "type": "number"},
            {"name": "income", "type": "number"},
            {"name": "city", "type": "category"},
        ],
    }
    for value in ("Lyon", "Paris", "52000", "34", "101", "yes"):
        assert value not in text


# -- text of values -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, "1", 1.0, np.int64(1), np.float32(1.0), np.uint8(1)])
def test_integer_like_values_share_one_text(value: object) -> None:
    assert value_text(value) == "1"


def test_other_values_keep_a_faithful_text() -> None:
    assert value_text(0.5) == "0.5"
    assert value_text(np.float32(0.1)) == "0.1"
    assert value_text("1.0") == "1.0"
    assert value_text(True) == "True"
    assert value_text(-0.0) == "0"


# -- agreement across parties -------------------------------------------------------------


def test_agreeing_parties_share_the_first_partys_column_order() -> None:
    a = schema(("age", NUM), ("city", CAT))
    b = schema(("city", CAT), ("age", NUM))
    assert check_schemas({"bank-a": a, "bank-b": b}) == a
    assert check_schemas({"bank-b": b, "bank-a": a}) == b


def test_party_lacking_a_column_is_named_with_the_column_and_who_has_it() -> None:
    full = schema(("age", NUM), ("income", NUM))
    with pytest.raises(SchemaError) as err:
        check_schemas({"bank-a": full, "bank-b": schema(("age", NUM)), "bank-c": full})
    assert "party 'bank-b' lacks column 'income' that parties 'bank-a', 'bank-c' have" in str(
        err.value
    )


def test_party_with_an_extra_column_is_named_with_the_column() -> None:
    base = schema(("age", NUM))
    with pytest.raises(SchemaError) as err:
        check_schemas({"bank-a": base, "bank-b": base, "bank-c": schema(("age", NUM), ("x", CAT))})
    assert "party 'bank-c' has extra column 'x'" in str(err.value)


def test_type_disagreement_names_party_column_and_both_types() -> None:
    with pytest.raises(SchemaError) as err:
        check_schemas({"bank-a": schema(("age", NUM)), "bank-b": schema(("age", CAT))})
    assert "party 'bank-b' column 'age' is category, 'bank-a' has number" in str(err.value)
    assert "data.columns" in str(err.value)


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(SchemaError) as err:
        check_schemas(
            {
                "bank-a": schema(("age", NUM), ("income", NUM)),
                "bank-b": schema(("age", CAT)),
                "bank-c": schema(("age", NUM), ("income", NUM), ("x", CAT)),
            }
        )
    text = str(err.value)
    assert "party 'bank-b' lacks column 'income'" in text
    assert "party 'bank-c' has extra column 'x'" in text
    assert "party 'bank-b' column 'age' is category" in text
    assert "3 problem(s)" in text


def test_different_label_columns_disagree() -> None:
    with pytest.raises(SchemaError, match=r"party 'bank-b' has label column 'target'"):
        check_schemas(
            {"bank-a": schema(("age", NUM)), "bank-b": schema(("age", NUM), label="target")}
        )


def test_no_schemas_is_a_data_error() -> None:
    with pytest.raises(DataError):
        check_schemas({})


# -- JSON ---------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=8).filter(lambda s: s != "label")


@given(st.dictionaries(names, st.sampled_from(list(ColumnType)), max_size=6))
def test_schema_json_round_trips_through_text(cols: dict[str, ColumnType]) -> None:
    original = TableSchema(tuple(ColumnSchema(n, t) for n, t in cols.items()), "label")
    assert TableSchema.from_json(json.loads(json.dumps(original.to_json()))) == original


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"label": "y", "columns": [{"name": "a", "type": "text"}]},
        {"label": "y", "columns": [{"name": "a", "type": "number"}] * 2},
        {"label": "y", "columns": [{"name": "y", "type": "number"}]},
        {"label": 3, "columns": []},
    ],
)
def test_malformed_schema_json_is_a_protocol_error(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="malformed table schema"):
        TableSchema.from_json(bad)
