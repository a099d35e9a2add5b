"""Federated preprocessing: local statistics merge into the plan pooled rows would give."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsilo.data.preprocess import (
    CONSTANT_CATEGORY_FILL,
    CONSTANT_NUMBER_FILL,
    MissingPolicy,
    PreprocessPlan,
    local_stats,
    merge_stats,
)
from fedsilo.data.tabular import ColumnSchema, ColumnType, TableSchema, check_schemas
from fedsilo.data.typed import infer_schema, read_raw
from fedsilo.errors import DataError, MissingValueError, ProtocolError, SchemaError

NUM, CAT = ColumnType.NUMBER, ColumnType.CATEGORY
EPS = float(np.finfo(np.float64).eps)


def federate(
    frames: Mapping[str, pd.DataFrame],
    policy: MissingPolicy = MissingPolicy.REJECT,
    *,
    label: str = "y",
    id_column: str | None = None,
    declared: Mapping[str, ColumnType] | None = None,
) -> PreprocessPlan:
    """The whole setup as parties and coordinator run it, through JSON at every hop."""
    schemas = {
        p: infer_schema(
            df,
            label=label,
            id_column=id_column,
            declared={n: ColumnSchema(n, t) for n, t in (declared or {}).items()},
            party=p,
            source=f"{p}.csv",
        )
        for p, df in frames.items()
    }
    wire_schemas = {
        p: TableSchema.from_json(json.loads(json.dumps(s.to_json()))) for p, s in schemas.items()
    }
    shared = check_schemas(wire_schemas)
    stats = {
        p: json.loads(
            json.dumps(local_stats(df, shared, party=p, source=f"{p}.csv"), allow_nan=False)
        )
        for p, df in frames.items()
    }
    plan = merge_stats(stats, shared, policy)
    return PreprocessPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)))


def transform_all(
    plan: PreprocessPlan, frames: Mapping[str, pd.DataFrame]
) -> tuple[np.ndarray, np.ndarray]:
    parts = [plan.transform(df, party=p, source=f"{p}.csv") for p, df in frames.items()]
    return np.vstack([x for x, _ in parts]), np.concatenate([y for _, y in parts])


# -- the reference: the same encoding computed on the pooled rows ---------------------------


def label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pooled_reference(
    pooled: pd.DataFrame, columns: Sequence[ColumnSchema], policy: MissingPolicy, label: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in columns:
        if col.type is NUM:
            x = pooled[col.name].to_numpy(dtype=np.float64)
            present = x[~np.isnan(x)]
            mean, std = present.mean(), present.std(ddof=0)
            if std == 0 or std <= len(present) * EPS * abs(mean):
                std = 1.0
            fill = mean if policy is MissingPolicy.MEAN else CONSTANT_NUMBER_FILL
            blocks.append(((np.where(np.isnan(x), fill, x) - mean) / std)[:, None])
            names.append(col.name)
        else:
            series = pooled[col.name]
            counts = series.dropna().value_counts()
            cats = set(counts.index)
            if policy is MissingPolicy.CONSTANT:
                cats.add(CONSTANT_CATEGORY_FILL)
                fill = CONSTANT_CATEGORY_FILL
            elif len(counts):
                fill = min(v for v, c in counts.items() if c == counts.max())
            ordered = sorted(cats)
            filled = [fill if pd.isna(v) else v for v in series]
            blocks.append(np.array([[v == c for c in ordered] for v in filled], dtype=float))
            names.extend(f"{col.name}={c}" for c in ordered)
    x_ref = np.hstack(blocks) if blocks else np.zeros((len(pooled), 0))
    texts = [label_text(v) for v in pooled[label]]
    classes = sorted(set(texts))
    y_ref = np.array([classes.index(t) for t in texts], dtype=np.int64)
    return x_ref, y_ref, names


@st.composite
def federations(draw: st.DrawFn) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, MissingPolicy]:
    """Random rows (numbers, categories, mixed-type labels) split across 1..5 parties."""
    policy = draw(st.sampled_from(list(MissingPolicy)))
    n_rows = draw(st.integers(1, 30))
    n_num, n_cat = draw(st.integers(0, 3)), draw(st.integers(0, 3))

    def holes() -> list[bool]:
        if policy is MissingPolicy.REJECT:
            return [False] * n_rows
        mask = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        mask[0] = False  # every column keeps at least one value somewhere
        return mask

    columns: dict[str, Any] = {}
    for i in range(n_num):
        offset = draw(st.sampled_from([0.0, 1e6, -1e5]))
        steps = draw(st.lists(st.integers(-10_000, 10_000), min_size=n_rows, max_size=n_rows))
        columns[f"num{i}"] = [
            np.nan if hole else offset + k / 64 for k, hole in zip(steps, holes(), strict=True)
        ]
    for j in range(n_cat):
        values = draw(
            st.lists(st.sampled_from(["a", "b", "c", "x=y", "é"]), min_size=n_rows, max_size=n_rows)
        )
        columns[f"cat{j}"] = pd.Series(
            [None if hole else v for v, hole in zip(values, holes(), strict=True)], dtype=object
        )
    labels = draw(
        st.lists(st.sampled_from([0, 1, 2, "1", "b", 1.0, 2.0]), min_size=n_rows, max_size=n_rows)
    )
    order = draw(st.permutations(sorted(columns)))
    pooled = pd.DataFrame({name: columns[name] for name in order})
    pooled["y"] = pd.Series(labels, dtype=object)

    n_parties = draw(st.integers(1, 5))
    cuts = sorted(
        draw(st.lists(st.integers(0, n_rows), min_size=n_parties - 1, max_size=n_parties - 1))
    )
    bounds = [0, *cuts, n_rows]
    frames = {}
    for k in range(n_parties):
        part = pooled.iloc[bounds[k] : bounds[k + 1]].reset_index(drop=True)
        # Parties may keep their columns in any order: only names matter.
        shuffled = draw(st.permutations(list(part.columns)))
        frames[f"party-{k + 1}"] = part[list(shuffled)]
    return frames, pooled, policy


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(federations())
def test_federated_plan_encodes_exactly_like_the_pooled_rows(
    case: tuple[dict[str, pd.DataFrame], pd.DataFrame, MissingPolicy],
) -> None:
    frames, pooled, policy = case
    plan = federate(frames, policy)
    x, y = transform_all(plan, frames)

    x_ref, y_ref, names = pooled_reference(pooled, plan.schema.columns, policy, "y")
    assert list(plan.feature_names) == names
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (len(pooled), len(names))
    np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, y_ref)


@settings(deadline=None, max_examples=50)
@given(federations())
def test_plan_json_round_trip_gives_an_equal_plan(
    case: tuple[dict[str, pd.DataFrame], pd.DataFrame, MissingPolicy],
) -> None:
    frames, _, policy = case
    plan = federate(frames, policy)
    again = PreprocessPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)))
    assert again == plan
    assert again.to_json() == plan.to_json()


# -- files --------------------------------------------------------------------------------


def bank(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "client": np.arange(n) + 1000 * seed,
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 12_000, n).round(2),
            "zip": rng.choice([75001, 69002, 13003], n),
            "city": rng.choice(["Lyon", "Paris", "Marseille"], n),
            "y": rng.choice([0, 1], n),
        }
    )


def test_csv_and_parquet_parties_get_the_plan_their_frames_would_get(tmp_path: Path) -> None:
    frames = {"bank-a": bank(1, 40), "bank-b": bank(2, 25), "bank-c": bank(3, 31)}
    frames["bank-c"]["y"] = frames["bank-c"]["y"].astype(str)  # labels as text in one file
    frames["bank-b"]["zip"] = frames["bank-b"]["zip"].astype(str)  # zip codes as text
    paths = {
        "bank-a": tmp_path / "a.csv",
        "bank-b": tmp_path / "b.parquet",
        "bank-c": tmp_path / "c.parquet",
    }
    for party, path in paths.items():
        if path.suffix == ".csv":
            frames[party].to_csv(path, index=False)
        else:
            frames[party].to_parquet(path, index=False)
    read = {p: read_raw(path, party=p) for p, path in paths.items()}
    declared = {"zip": CAT}

    from_files = federate(read, id_column="client", declared=declared)
    from_frames = federate(frames, id_column="client", declared=declared)

    assert from_files == from_frames
    assert from_files.classes == ("0", "1")
    assert from_files.categories["zip"] == ("13003", "69002", "75001")
    x_files, y_files = transform_all(from_files, read)
    x_frames, y_frames = transform_all(from_frames, frames)
    np.testing.assert_allclose(x_files, x_frames, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_files, y_frames)


def test_integer_text_and_integral_float_labels_are_one_class(tmp_path: Path) -> None:
    path = tmp_path / "floats.csv"
    path.write_text("x,y\n1,1.0\n2,0.0\n3,\n")  # the empty label makes pandas read floats
    floats = read_raw(path, party="c").iloc[:2]
    frames = {
        "a": pd.DataFrame({"x": [1.0, 2.0], "y": [1, 0]}),
        "b": pd.DataFrame({"x": [3.0, 4.0], "y": ["1", "0"]}),
        "c": floats,
    }
    plan = federate(frames)
    assert plan.classes == ("0", "1")
    _, y = transform_all(plan, frames)
    assert y.tolist() == [1, 0, 1, 0, 1, 0]


# -- statistics ---------------------------------------------------------------------------


def test_local_stats_are_plain_json_with_counts_sums_and_value_counts() -> None:
    df = pd.DataFrame({"age": [30.0, np.nan, 50.0], "city": ["x", "y", None], "y": [0, 1, 1]})
    shared = TableSchema((ColumnSchema("age", NUM), ColumnSchema("city", CAT)), "y")
    stats = local_stats(df, shared, party="a", source="a.csv")
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats
    assert stats["n_rows"] == 3
    age = stats["columns"]["age"]
    assert (age["count"], age["sum"], age["sum_sq"], age["missing"]) == (2, 80.0, 3400.0, 1)
    assert stats["columns"]["city"] == {
        "type": "category",
        "counts": {"x": 1, "y": 1},
        "missing": 1,
    }
    assert stats["label_counts"] == {"0": 1, "1": 2}


def test_infinite_number_names_party_column_and_row() -> None:
    df = pd.DataFrame({"income": [1.0, 2.0, np.inf], "y": [0, 1, 0]})
    shared = TableSchema((ColumnSchema("income", NUM),), "y")
    with pytest.raises(DataError, match=r"party 'bank-a' column 'income'.*infinite.*row 3"):
        local_stats(df, shared, party="bank-a", source="a.csv")


def test_party_lacking_a_shared_column_is_a_schema_error_naming_it() -> None:
    shared = TableSchema((ColumnSchema("income", NUM), ColumnSchema("age", NUM)), "y")
    df = pd.DataFrame({"income": [1.0], "y": [0]})
    with pytest.raises(SchemaError, match=r"party 'bank-b' lacks column\(s\) 'age'"):
        local_stats(df, shared, party="bank-b", source="b.csv")


def test_missing_label_is_rejected_under_every_policy() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", None, "b"]})
    shared = TableSchema((ColumnSchema("x", NUM),), "y")
    with pytest.raises(MissingValueError, match=r"party 'a' label column 'y'.*1 row.*row 2"):
        local_stats(df, shared, party="a", source="a.csv")


def test_huge_offsets_keep_full_precision() -> None:
    base = 1e9
    frames = {
        "a": pd.DataFrame({"x": [base + 0.01, base + 0.02], "y": [0, 1]}),
        "b": pd.DataFrame({"x": [base + 0.03], "y": [1]}),
    }
    plan = federate(frames)
    pooled = np.array([base + 0.01, base + 0.02, base + 0.03])
    assert plan.means["x"] == pytest.approx(pooled.mean(), abs=1e-6)
    assert plan.stds["x"] == pytest.approx(pooled.std(), rel=1e-6)


def test_constant_column_gets_std_one_and_encodes_as_zero() -> None:
    frames = {
        "a": pd.DataFrame({"x": [0.1, 0.1], "y": [0, 1]}),
        "b": pd.DataFrame({"x": [0.1], "y": [1]}),
    }
    plan = federate(frames)
    assert plan.stds["x"] == 1.0
    x, _ = transform_all(plan, frames)
    np.testing.assert_allclose(x, 0.0, atol=1e-12)


def test_malformed_statistics_are_a_protocol_error_naming_the_party() -> None:
    shared = TableSchema((ColumnSchema("x", NUM),), "y")
    good = local_stats(pd.DataFrame({"x": [1.0], "y": [0]}), shared, party="a", source="a")
    bad = json.loads(json.dumps(good))
    bad["columns"]["x"]["count"] = -1
    with pytest.raises(ProtocolError, match=r"party 'b'"):
        merge_stats({"a": good, "b": bad}, shared, MissingPolicy.REJECT)
    del bad["columns"]["x"]
    with pytest.raises(ProtocolError, match=r"party 'b'.*column 'x'"):
        merge_stats({"a": good, "b": bad}, shared, MissingPolicy.REJECT)


# -- missing values -----------------------------------------------------------------------


def holey() -> dict[str, pd.DataFrame]:
    return {
        "bank-a": pd.DataFrame(
            {"age": [1.0, 2.0, np.nan], "city": ["x", "x", "y"], "y": [0, 1, 0]}
        ),
        "bank-b": pd.DataFrame({"age": [6.0, np.nan], "city": ["y", None], "y": [1, 1]}),
        "bank-c": pd.DataFrame({"age": [4.0], "city": ["y"], "y": [0]}),
    }


def test_reject_policy_names_every_party_column_and_count_and_how_to_declare() -> None:
    with pytest.raises(MissingValueError) as err:
        federate(holey(), MissingPolicy.REJECT)
    text = str(err.value)
    assert "party 'bank-a' column 'age': 1 of 3 rows missing" in text
    assert "party 'bank-b' column 'age': 1 of 2 rows missing" in text
    assert "party 'bank-b' column 'city': 1 of 2 rows missing" in text
    assert "bank-c" not in text
    assert 'data.missing = "mean"' in text and 'data.missing = "constant"' in text


def test_mean_policy_imputes_the_federated_mean_and_most_frequent_category() -> None:
    frames = holey()
    plan = federate(frames, MissingPolicy.MEAN)
    # present ages: 1, 2, 6, 4 -> mean 3.25; cities x, x, y, y, y -> "y"
    assert plan.means["age"] == 3.25
    assert plan.impute == {"age": 3.25, "city": "y"}
    x, _ = transform_all(plan, frames)
    age = x[:, plan.feature_names.index("age")]
    assert age[2] == 0.0 and age[4] == 0.0  # the imputed rows sit exactly at the mean
    raw = np.array([1.0, 2.0, 3.25, 6.0, 3.25, 4.0])
    np.testing.assert_allclose(age, (raw - 3.25) / np.std([1.0, 2.0, 6.0, 4.0]), rtol=1e-6)
    city_y = x[:, plan.feature_names.index("city=y")]
    assert city_y[4] == 1.0


def test_constant_policy_fills_zero_and_a_missing_category() -> None:
    frames = holey()
    plan = federate(frames, MissingPolicy.CONSTANT)
    assert plan.impute == {"age": 0.0, "city": "missing"}
    assert plan.categories["city"] == ("missing", "x", "y")
    x, _ = transform_all(plan, frames)
    age = x[:, plan.feature_names.index("age")]
    assert age[2] == pytest.approx((0.0 - 3.25) / plan.stds["age"], rel=1e-6)
    assert x[4, plan.feature_names.index("city=missing")] == 1.0


def test_reject_policy_at_transform_names_party_column_and_count() -> None:
    plan = federate({"a": pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})})
    test = pd.DataFrame({"x": [np.nan, 2.0, np.nan], "y": [0, 1, 0]})
    with pytest.raises(MissingValueError, match=r"party 'test' column 'x' has 2 missing.*row 1"):
        plan.transform(test, party="test", source="test.csv")


def test_number_column_without_any_value_cannot_be_standardized() -> None:
    frames = {"a": pd.DataFrame({"x": [np.nan, np.nan], "y": [0, 1]})}
    with pytest.raises(DataError, match=r"column 'x' has no values at any party"):
        federate(frames, MissingPolicy.MEAN)


# -- transform ----------------------------------------------------------------------------


def test_unseen_category_at_transform_names_party_column_value_and_row() -> None:
    plan = federate({"a": pd.DataFrame({"city": ["Lyon", "Paris"], "y": [0, 1]})})
    later = pd.DataFrame({"city": ["Paris", "Oslo"], "y": [0, 1]})
    with pytest.raises(DataError, match=r"party 'b' column 'city' has value 'Oslo' \(b.csv, row 2"):
        plan.transform(later, party="b", source="b.csv")


def test_unknown_label_at_transform_is_a_data_error() -> None:
    plan = federate({"a": pd.DataFrame({"x": [1.0, 2.0], "y": ["no", "yes"]})})
    later = pd.DataFrame({"x": [1.0], "y": ["maybe"]})
    with pytest.raises(DataError, match=r"label column 'y' has value 'maybe'.*'no', 'yes'"):
        plan.transform(later, party="b", source="b.csv")


def test_transform_ignores_extra_columns_and_column_order() -> None:
    df = pd.DataFrame({"x": [1.0, 3.0], "c": ["u", "v"], "y": [0, 1]})
    plan = federate({"a": df})
    shuffled = df[["y", "c", "x"]].assign(client_id=[7, 8])
    x1, y1 = plan.transform(df, party="a", source="a")
    x2, y2 = plan.transform(shuffled, party="a", source="a")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert plan.feature_names == ("x", "c=u", "c=v")


def test_transform_of_no_rows_has_the_plan_width() -> None:
    plan = federate({"a": pd.DataFrame({"x": [1.0, 3.0], "c": ["u", "v"], "y": [0, 1]})})
    empty = pd.DataFrame(
        {
            "x": pd.Series([], dtype=float),
            "c": pd.Series([], dtype=object),
            "y": pd.Series([], dtype=object),
        }
    )
    x, y = plan.transform(empty, party="a", source="a")
    assert x.shape == (0, 3) and y.shape == (0,)


def test_text_in_a_number_column_at_transform_names_the_row() -> None:
    plan = federate({"a": pd.DataFrame({"x": [1.0, 3.0], "y": [0, 1]})})
    bad = pd.DataFrame({"x": ["1.5", "oops"], "y": [0, 1]})
    with pytest.raises(DataError, match=r"party 'b' column 'x' \(b.csv\) is not a number \(row 2"):
        plan.transform(bad, party="b", source="b.csv")


# -- plan JSON ----------------------------------------------------------------------------


def test_plan_survives_json_text_unchanged() -> None:
    plan = federate(holey(), MissingPolicy.MEAN)
    text = json.dumps(plan.to_json(), allow_nan=False)
    again = PreprocessPlan.from_json(json.loads(text))
    assert again == plan
    assert json.dumps(again.to_json(), allow_nan=False) == text


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("means"),
        lambda d: d.update(policy="drop"),
        lambda d: d["stds"].update(age=0.0),
        lambda d: d.update(classes=[]),
        lambda d: d["impute"].update(city="nowhere"),
        lambda d: d.update(feature_names=["age"]),
        lambda d: d.pop("schema"),
    ],
)
def test_malformed_plan_json_is_a_protocol_error(change: Any) -> None:
    data = json.loads(json.dumps(federate(holey(), MissingPolicy.MEAN).to_json()))
    change(data)
    with pytest.raises(ProtocolError, match="malformed"):
        PreprocessPlan.from_json(data)
