"""Table schemas: parties agree on columns and types, schemas cross the wire as JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedsilo.data.tabular import ColumnSchema, ColumnType, TableSchema, check_schemas
from fedsilo.errors import DataError, ProtocolError, SchemaError

NUM, CAT = ColumnType.NUMBER, ColumnType.CATEGORY


def schema(*cols: tuple[str, ColumnType], label: str = "defaulted") -> TableSchema:
    return TableSchema(tuple(ColumnSchema(n, t) for n, t in cols), label)


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
