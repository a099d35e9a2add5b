"""Reading a party's table with the one reader: CSV as text, Parquet typed, schema inferred."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsilo.data.tabular import ColumnSchema, ColumnType, TableSchema
from fedsilo.data.typed import Declared, infer_schema, read_raw, schema_columns, typed_frame
from fedsilo.errors import ConfigError, DataError, SchemaError

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
    declared = kw.pop("declared", None) or {}
    args: dict[str, object] = {
        "label": "defaulted",
        "id_column": None,
        "declared": {n: ColumnSchema(n, t) for n, t in declared.items()},  # type: ignore[attr-defined]
        "party": "bank-a",
        "source": "data/bank_a.csv",
    }
    args.update(kw)
    return infer_schema(df, **args)  # type: ignore[arg-type]


def typed(
    df: pd.DataFrame, s: TableSchema, party: str = "bank-a", source: str = "x"
) -> pd.DataFrame:
    return typed_frame(df, schema_columns(s), party=party, source=source)


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

    got = read_raw(path, party="bank-a")

    assert list(got.columns) == list(df.columns)
    want = schema(("age", NUM), ("income", NUM), ("city", CAT))
    assert infer(got, id_column="customer_id") == want
    assert infer(df, id_column="customer_id") == want
    pd.testing.assert_frame_equal(typed(got, want), typed(df, want))


def test_missing_file_names_party_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match=r"party 'bank-b'.*nowhere\.csv.*does not exist"):
        read_raw(path, party="bank-b")


def test_unknown_suffix_names_party_path_and_the_accepted_types(tmp_path: Path) -> None:
    path = tmp_path / "bank.xlsx"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"party 'bank-b'.*bank\.xlsx.*\.csv or \.parquet"):
        read_raw(path, party="bank-b")


def test_corrupt_parquet_file_is_a_data_error_naming_party_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bank.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"party 'bank-c'.*bank\.parquet.*Parquet"):
        read_raw(path, party="bank-c")


def test_empty_csv_file_is_a_data_error_saying_the_header_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"party 'bank-c'.*bank\.csv.*empty"):
        read_raw(path, party="bank-c")


def test_directory_instead_of_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "folder.csv"
    path.mkdir()
    with pytest.raises(DataError, match=r"not a file"):
        read_raw(path, party="bank-c")


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


@pytest.mark.parametrize("bad", ["1,234.50", "146,5", "?", "n/a", "12k"])
def test_a_number_column_with_a_malformed_value_is_refused_not_made_a_category(bad: str) -> None:
    # As a category, each of its numbers would be a category name sent to the coordinator.
    incomes = [f"{40_000 + 137.5 * i:.2f}" for i in range(30)]
    incomes[6] = bad
    df = frame().iloc[[0] * 30].reset_index(drop=True).assign(income=incomes)
    with pytest.raises(SchemaError) as err:
        infer(df)
    text = str(err.value)
    assert text.startswith(
        "party 'bank-a' column 'income' (data/bank_a.csv) looks numeric (29 of 30 values are "
        f"numbers), but row 7 holds {bad!r} (1 such value(s): {bad!r})."
    )
    assert 'columns = { income = "number" }' in text and 'income = "category"' in text
    # declared, the choice is the user's: a category, or a number that names every bad row
    assert infer(df, declared={"income": CAT}).type_of("income") is CAT
    with pytest.raises(DataError, match=r"column 'income' .*is not a number \(row 7, 1 value"):
        typed(df, infer(df, declared={"income": NUM}))


def test_mostly_text_with_a_few_numbers_is_a_category() -> None:
    df = frame().assign(city=["Lyon", "75001", "Paris"])
    assert infer(df).type_of("city") is CAT


def test_an_undeclared_column_of_unique_texts_is_refused_unless_declared() -> None:
    n = 60
    df = pd.DataFrame(
        {
            "ref": [f"C-{i:05d}" for i in range(n)],  # an identifier nobody declared
            "city": [["Lyon", "Paris", "Nice"][i % 3] for i in range(n)],
            "defaulted": ["no", "yes"] * (n // 2),
        }
    )
    with pytest.raises(SchemaError) as err:
        infer(df)
    assert str(err.value).startswith(
        "party 'bank-a' column 'ref' (data/bank_a.csv) would be a category of 60 distinct "
        "values in 60 rows: every value would be a feature of its own, and a category name a "
        "horizontal job shares with the coordinator."
    )
    assert "declare it the id column" in str(err.value)
    assert infer(df, id_column="ref").names == ("city",)
    assert infer(df, declared={"ref": CAT}).type_of("ref") is CAT
    # 20 distinct values (the limit), or 25 with more than two rows each, stay categories
    few = df.assign(ref=[f"C-{i % 20}" for i in range(n)])
    assert infer(few).type_of("ref") is CAT
    assert infer(df.assign(ref=[f"C-{i % 25}" for i in range(n)])).type_of("ref") is CAT
    # a column name that is not a TOML bare key is quoted in the advice, which parses as TOML
    for name, key in (("client ref", '"client ref"'), ("größe", '"größe"'), ("1st", "1st")):
        with pytest.raises(SchemaError) as err:
            infer(df.rename(columns={"ref": name}))
        advice = str(err.value).split("declare it: ")[1].rstrip(".")
        assert advice == f'columns = {{ {key} = "category" }}'
        assert tomllib.loads(advice) == {"columns": {name: "category"}}


def test_text_in_declared_number_column_names_party_column_file_and_row(tmp_path: Path) -> None:
    incomes = [str(1000 + i) for i in range(20)]
    incomes[16] = "12k"  # data row 17
    path = tmp_path / "bank_b.csv"
    pd.DataFrame({"income": incomes, "defaulted": ["no"] * 20}).to_csv(path, index=False)
    df = read_raw(path, party="bank-b")
    shared = infer(df, declared={"income": NUM}, party="bank-b", source=str(path))
    assert shared.type_of("income") is NUM

    with pytest.raises(DataError) as err:
        typed(df, shared, party="bank-b", source=str(path))
    text = str(err.value)
    assert "party 'bank-b' column 'income'" in text and "is not a number" in text
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
    with pytest.raises(SchemaError, match=r"column 'opened'.*date/time.*declare"):
        infer(df)
    assert infer(df, declared={"opened": CAT}).type_of("opened") is CAT


def test_describe_reveals_only_names_and_types() -> None:
    described = infer_schema(
        frame(), label="defaulted", id_column="customer_id", party="bank-a", source="x.csv"
    ).to_json()
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


# -- labels -------------------------------------------------------------------------------


def label_of(value: object) -> str:
    df = pd.DataFrame({"y": pd.Series([value], dtype=object)})
    out = typed_frame(df, {"y": Declared(CAT, label=True)}, party="a", source="a")
    return str(out["y"][0])


@pytest.mark.parametrize("value", [1, "1", 1.0, "1.0", np.int64(1), np.uint8(1)])
def test_integer_like_labels_are_one_class(value: object) -> None:
    assert label_of(value) == "1"


def test_other_labels_keep_their_text() -> None:
    assert label_of(0.5) == "0.5"
    assert label_of("01") == "01"
    assert label_of(True) == "True"
    assert label_of(" yes ") == " yes "


# -- booleans and dates -----------------------------------------------------------------------

BOOL = ColumnType.BOOLEAN
DATE = ColumnType.DATE


def read_one(values: list[object], spec: Declared) -> list[float]:
    df = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    out = typed_frame(df, {"c": spec}, party="a", source="a.csv")["c"]
    return [float(v) for v in out]


def test_boolean_spellings_are_case_insensitive_and_missing_is_nan() -> None:
    got = read_one(
        ["true", "False", "YES", "no", "1", "0", "t", "F", " Yes ", "", "NA"],
        Declared(BOOL, skip_missing=True),
    )
    assert got[:9] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert np.isnan(got[9]) and np.isnan(got[10])
    assert read_one([True, False], Declared(BOOL)) == [1.0, 0.0]  # a Parquet/pandas bool


def test_other_boolean_spellings_name_row_count_and_what_was_found() -> None:
    with pytest.raises(DataError) as err:
        read_one(["yes", "Y", "no", "maybe", "Y"], Declared(BOOL))
    text = str(err.value)
    assert "party 'a' column 'c' (a.csv) is not a boolean (row 2, 3 value(s) in all)" in text
    assert "'Y', 'maybe'" in text and "true/t/yes/1" in text


def test_dates_are_iso_unless_a_format_is_declared() -> None:
    assert read_one(["1970-01-02", "2025-03-01", ""], Declared(DATE, skip_missing=True))[:2] == [
        1.0,
        20148.0,
    ]
    with pytest.raises(DataError, match=r"is not an ISO date.*row 1.*'03/01/2025'.*ambiguous"):
        read_one(["03/01/2025"], Declared(DATE))
    day_first = read_one(["03/01/2025"], Declared(DATE, format="%d/%m/%Y"))
    month_first = read_one(["03/01/2025"], Declared(DATE, format="%m/%d/%Y"))
    assert day_first == [20091.0] and month_first == [20148.0]  # 3 Jan, 1 Mar 2025
    with pytest.raises(DataError, match=r"does not match the declared date format '%d/%m/%Y'"):
        read_one(["2025-03-01"], Declared(DATE, format="%d/%m/%Y"))


def test_parquet_dates_and_booleans_read_as_declared(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"d": pd.to_datetime(["2025-03-01", "1970-01-02"]), "b": [True, False], "y": [1, 0]}
    )
    df.to_parquet(tmp_path / "p.parquet")
    raw = read_raw(tmp_path / "p.parquet", party="a")
    declared = {"d": ColumnSchema("d", DATE), "b": ColumnSchema("b", BOOL)}
    s = infer_schema(raw, label="y", declared=declared, party="a", source="p.parquet")
    out = typed(raw, s)
    assert out["d"].tolist() == [20148.0, 1.0] and out["b"].tolist() == [1.0, 0.0]


def test_an_integral_text_label_and_2024_point_0_categories() -> None:
    from fedsilo.data.typed import cursor, typed_view

    df = pd.DataFrame({"year": pd.Series(["2024.0", "2025", "2024.5"], dtype=object)})
    con = cursor()
    with pytest.raises(DataError, match=r"'year'.*not an integer \(row 3, 1 value\(s\).*2024\.0"):
        typed_view(con, {"year": Declared(CAT, (2024, 2025))}, party="a", source="a", frame=df)


@pytest.mark.parametrize("kind", list(ColumnType))
def test_a_column_with_no_value_at_all_reads_as_missing_whatever_its_declared_type(
    tmp_path: Path, kind: ColumnType
) -> None:
    """An empty column of a small file (DuckDB gives it the type NULL) is all missing, not
    refused as stored with the wrong type."""
    (tmp_path / "few.csv").write_text("id,c\n1,\n2,\n")
    raw = read_raw(tmp_path / "few.csv", party="a")

    out = typed_frame(raw, {"c": Declared(kind, skip_missing=True)}, party="a", source="few.csv")

    assert out["c"].isna().all() and len(out) == 2
