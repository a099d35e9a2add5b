"""Federated preprocessing: local statistics, one shared plan, the same transform everywhere.

Every party must one-hot encode its categories and standardize its numbers *the same way*,
yet rows never leave a party. So preprocessing is done in three steps:

1. :func:`local_stats` (at each party): summable statistics of the party's rows, as plain
   JSON (``dict``/``list``/``str``/``int``/``float``), for the wire::

       {"n_rows": 120,
        "columns": {"age":  {"type": "number", "count": 118, "sum": 4921.0,
                             "sum_sq": 221950.0, "m2": 16718.3, "missing": 2},
                    "city": {"type": "category", "counts": {"Lyon": 70, "Paris": 50},
                             "missing": 0}},
        "label_counts": {"no": 90, "yes": 30}}

2. :func:`merge_stats` (at the coordinator): one :class:`PreprocessPlan` from all parties'
   statistics, exactly what a pooled computation would give.
3. :meth:`PreprocessPlan.transform` (at each party): features ``X`` (float32) and class
   indices ``y`` (int64) for training.

Decisions, all deliberate:

* **Numbers** are standardized with the mean and the *population* standard deviation
  (``ddof=0``) of the values present at all parties. ``m2`` is each party's sum of squared
  deviations from its own mean; the merge combines ``count``/``sum``/``m2`` with the
  parallel-variance formula (Chan, Golub & LeVeque 1979), which stays exact where
  ``sum_sq / n - mean**2`` cancels catastrophically (a mean of 1e9 with a spread of 0.01).
  ``sum_sq`` is sent as well so that aggregators which can only add (secure aggregation)
  have purely additive statistics; the merge falls back to it when ``m2`` is absent.
* A **constant** number column (standard deviation 0, or within floating-point rounding of
  0: ``std <= count * eps * |mean|``, as scikit-learn decides) is given std 1, so it
  encodes as (about) 0 rather than dividing by zero.
* **Rows** are read with the shared schema's types by :mod:`fedsilo.data.typed` (the one
  reader): numbers, booleans (0/1) and dates (days since 1970-01-01) are standardized
  numbers, categories their text exactly as written.
* **Categories** are the sorted (Python string order) union of the values seen at any
  party, compared as text. Each expands to
  features ``"column=value"``. A value the plan does not know raises DataError at
  transform time: it is never silently encoded as all zeros.
* **Labels** are compared as text too (``1``, ``1.0`` and ``"1"`` are class ``"1"``: an
  integral number is its digits);
  classes are the sorted union of label texts, ``y`` indexes them. A missing label is
  always an error (:class:`~fedsilo.errors.MissingValueError`): no policy imputes labels.
* **Missing values** follow :class:`MissingPolicy` (the job's ``data.missing``): ``reject``
  (default) fails setup naming every party and column with missing values; ``mean`` imputes
  numbers with the federated mean (so they encode as 0) and categories with the federated
  most frequent value (ties go to the first in sorted order); ``constant`` imputes numbers
  with ``0.0`` and categories with the value ``"missing"``, which then is one of every
  category column's values (so later rows with a missing value always encode). Means and
  standard deviations are computed from present values only; imputation happens before
  standardization. Rows are never dropped.
* **Feature order** follows the schema's column order; a number is one feature, a category
  one feature per value in the plan's order. Columns not in the schema (an id column) are
  ignored by :meth:`PreprocessPlan.transform`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.data.tabular import (
    SCORED,
    ColumnType,
    MissingPolicy,
    TableSchema,
    listing,
    texts_of,
    whose,
)
from fedsilo.data.typed import schema_columns, typed_frame
from fedsilo.errors import DataError, MissingValueError, ProtocolError, SchemaError

CONSTANT_NUMBER_FILL = 0.0
"""What ``MissingPolicy.CONSTANT`` puts in an empty number cell."""
CONSTANT_CATEGORY_FILL = "missing"
"""What ``MissingPolicy.CONSTANT`` puts in an empty category cell (then a category value)."""

_EPS = float(np.finfo(np.float64).eps)


# -- at each party ------------------------------------------------------------------------


def local_stats(
    df: pd.DataFrame, schema: TableSchema, *, party: str, source: str, typed: bool = False
) -> dict[str, Any]:
    """Summable statistics of one party's rows for the shared schema (JSON-serializable).

    ``df`` is the party's table as read (:func:`fedsilo.data.typed.read_raw`); it is read
    with the schema's types here, unless ``typed`` says it already was (:func:`read_typed`
    with this schema). Missing feature values are counted, not judged: the policy
    is applied when statistics are merged. A malformed value raises DataError naming party,
    file, column and row; a missing label raises MissingValueError.
    """
    if not typed:
        df = read_typed(df, schema, party=party, source=source)
    columns: dict[str, dict[str, Any]] = {}
    for col in schema.columns:
        series = df[col.name]
        if col.type.encoded is ColumnType.NUMBER:
            values = _numbers(series)
            columns[col.name] = _number_stats(values, column=col.name, party=party, source=source)
        else:
            codes, texts = texts_of(series)
            present = codes[codes >= 0]
            counts = np.bincount(present, minlength=len(texts))
            columns[col.name] = {
                "type": ColumnType.CATEGORY.value,
                "counts": {t: int(c) for t, c in zip(texts, counts, strict=True) if c > 0},
                "missing": int((codes < 0).sum()),
            }
    codes, texts = _label_codes(df, schema.label, party=party, source=source)
    label_counts = np.bincount(codes, minlength=len(texts))
    return {
        "n_rows": len(df),
        "columns": columns,
        "label_counts": {t: int(c) for t, c in zip(texts, label_counts, strict=True) if c > 0},
    }


def _number_stats(
    values: npt.NDArray[np.float64], *, column: str, party: str, source: str
) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    count = int(present.size)
    total = float(present.sum())
    sum_sq = float(np.dot(present, present))
    if count:
        dev = present - total / count
        m2 = max(0.0, float(np.dot(dev, dev)) - float(dev.sum()) ** 2 / count)
    else:
        m2 = 0.0
    if not (math.isfinite(total) and math.isfinite(sum_sq) and math.isfinite(m2)):
        raise DataError(
            f"{whose(party)} column {column!r} has values too large to summarize ({source}): "
            "their squares overflow (|value| above about 1e154). Rescale the column."
        )
    return {
        "type": ColumnType.NUMBER.value,
        "count": count,
        "sum": total,
        "sum_sq": sum_sq,
        "m2": m2,
        "missing": int(values.size - count),
    }


# -- at the coordinator -------------------------------------------------------------------


def merge_stats(
    stats: Mapping[str, Mapping[str, Any]], schema: TableSchema, policy: MissingPolicy
) -> PreprocessPlan:
    """One plan from every party's :func:`local_stats`, as if their rows were pooled.

    With ``MissingPolicy.REJECT`` and missing values anywhere, raises MissingValueError
    naming every party and column with missing values and how to declare a policy.
    Malformed statistics raise ProtocolError.
    """
    if not stats:
        raise DataError("no party statistics to merge: no party reported its data")
    checked = {party: _checked_stats(party, s, schema) for party, s in stats.items()}

    if policy is MissingPolicy.REJECT:
        _reject_missing(checked, schema)

    total_rows = sum(int(s["n_rows"]) for s in checked.values())
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    categories: dict[str, tuple[str, ...]] = {}
    impute: dict[str, float | str] = {}
    for col in schema.columns:
        name = col.name
        parts = [s["columns"][name] for s in checked.values()]
        if col.type.encoded is ColumnType.NUMBER:
            mean, std = _merge_moments(name, parts, total_rows)
            means[name], stds[name] = mean, std
            if policy is MissingPolicy.MEAN:
                impute[name] = mean
            elif policy is MissingPolicy.CONSTANT:
                impute[name] = CONSTANT_NUMBER_FILL
        else:
            counts: dict[str, int] = {}
            for part in parts:
                for value, c in part["counts"].items():
                    counts[value] = counts.get(value, 0) + int(c)
            values = set(counts)
            if policy is MissingPolicy.CONSTANT:
                values.add(CONSTANT_CATEGORY_FILL)
                impute[name] = CONSTANT_CATEGORY_FILL
            elif policy is MissingPolicy.MEAN:
                if not counts:
                    raise DataError(
                        f"column {name!r} has no values at any party ({total_rows} rows, all "
                        "missing), so it has no most frequent value. Drop the column or use "
                        'data.missing = "constant".'
                    )
                top = max(counts.values())
                impute[name] = min(v for v, c in counts.items() if c == top)
            categories[name] = tuple(sorted(values))

    labels: set[str] = set()
    for s in checked.values():
        labels.update(v for v, c in s["label_counts"].items() if int(c) > 0)
    if not labels:
        raise DataError(
            f"no party has a labelled row ({total_rows} rows in all); nothing to learn from"
        )
    return PreprocessPlan(
        schema=schema,
        policy=policy,
        means=means,
        stds=stds,
        categories=categories,
        impute=impute,
        classes=tuple(sorted(labels)),
    )


def _merge_moments(name: str, parts: list[dict[str, Any]], total_rows: int) -> tuple[float, float]:
    count = sum(int(p["count"]) for p in parts)
    if count == 0:
        raise DataError(
            f"number column {name!r} has no values at any party ({total_rows} rows, all "
            "missing): there is no mean or spread to standardize with. Drop the column or "
            "fill it in."
        )
    mean = math.fsum(float(p["sum"]) for p in parts) / count
    terms: list[float] = []
    for p in parts:
        n = int(p["count"])
        if n == 0:
            continue
        local_mean = float(p["sum"]) / n
        m2 = p.get("m2")
        if m2 is None:  # sums-only statistics: less precise, still correct
            m2 = max(0.0, float(p["sum_sq"]) - float(p["sum"]) ** 2 / n)
        terms.append(float(m2))
        terms.append(n * (local_mean - mean) ** 2)
    std = math.sqrt(max(0.0, math.fsum(terms)) / count)
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise DataError(f"number column {name!r} has values too large to standardize")
    if std == 0.0 or std <= count * _EPS * abs(mean):
        std = 1.0
    return mean, std


def _checked_stats(party: str, stats: Mapping[str, Any], schema: TableSchema) -> dict[str, Any]:
    """The statistics if well-formed for ``schema``, else ProtocolError naming the party."""

    def bad(why: str) -> ProtocolError:
        return ProtocolError(f"{whose(party)} sent malformed statistics: {why}")

    def count(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"{what} is {value!r}, expected a count")
        return value

    def number(value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"{what} is {value!r}, expected a number")
        if not math.isfinite(value):
            raise bad(f"{what} is {value!r}, expected a finite number")
        return float(value)

    def value_counts(value: Any, what: str) -> dict[str, int]:
        if not isinstance(value, Mapping):
            raise bad(f"{what} is not a mapping of values to counts")
        out = {}
        for k, c in value.items():
            if not isinstance(k, str):
                raise bad(f"{what} has a non-text value {k!r}")
            out[k] = count(c, f"{what}[{k!r}]")
        return out

    if not isinstance(stats, Mapping):
        raise bad("not a mapping")
    try:
        n_rows = count(stats["n_rows"], "n_rows")
        raw_columns = stats["columns"]
        if not isinstance(raw_columns, Mapping):
            raise bad("'columns' is not a mapping")
        columns: dict[str, dict[str, Any]] = {}
        for col in schema.columns:
            if col.name not in raw_columns:
                raise bad(f"no statistics for column {col.name!r}")
            raw = raw_columns[col.name]
            where = f"column {col.name!r}"
            encoded = col.type.encoded
            if not isinstance(raw, Mapping) or raw.get("type") != encoded.value:
                raise bad(f"{where} is not described as a {encoded.value} column")
            missing = count(raw["missing"], f"{where} missing")
            if encoded is ColumnType.NUMBER:
                entry: dict[str, Any] = {
                    "count": count(raw["count"], f"{where} count"),
                    "sum": number(raw["sum"], f"{where} sum"),
                    "sum_sq": number(raw["sum_sq"], f"{where} sum_sq"),
                    "missing": missing,
                }
                if raw.get("m2") is not None:
                    entry["m2"] = number(raw["m2"], f"{where} m2")
                present = entry["count"]
            else:
                entry = {
                    "counts": value_counts(raw["counts"], f"{where} counts"),
                    "missing": missing,
                }
                present = sum(entry["counts"].values())
            if present + missing != n_rows:
                raise bad(
                    f"{where} counts {present} present and {missing} missing values "
                    f"in {n_rows} rows"
                )
            columns[col.name] = entry
        label_counts = value_counts(stats["label_counts"], "label_counts")
    except KeyError as exc:
        raise bad(f"key {exc} is missing") from None
    if sum(label_counts.values()) != n_rows:
        raise bad(f"label counts add up to {sum(label_counts.values())}, not {n_rows} rows")
    return {"n_rows": n_rows, "columns": columns, "label_counts": label_counts}


def _reject_missing(checked: Mapping[str, dict[str, Any]], schema: TableSchema) -> None:
    lines = []
    for party, s in checked.items():
        for col in schema.columns:
            missing = int(s["columns"][col.name]["missing"])
            if missing:
                lines.append(
                    f"{whose(party)} column {col.name!r}: {missing} of {s['n_rows']} rows missing"
                )
    if lines:
        raise MissingValueError(
            'missing values found and data.missing = "reject" (the default); fedsilo never '
            "drops rows silently:\n  - "
            + "\n  - ".join(lines)
            + "\nFill them in the files, or declare a policy in the job TOML: "
            'data.missing = "mean" (numbers get the federated mean, categories the most '
            'frequent value) or data.missing = "constant" (numbers get 0, categories the '
            'value "missing").'
        )


# -- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessPlan:
    """How every party turns its rows into features and class indices.

    ``means``/``stds`` are per number column, ``categories`` per category column (in
    encoding order), ``impute`` per feature column (empty under ``REJECT``), ``classes``
    the label texts in class-index order. ``feature_names`` is derived: numbers as their
    column name, categories as ``"column=value"``, in schema order.
    """

    schema: TableSchema
    policy: MissingPolicy
    means: Mapping[str, float]
    stds: Mapping[str, float]
    categories: Mapping[str, tuple[str, ...]]
    impute: Mapping[str, float | str]
    classes: tuple[str, ...]
    feature_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        numbers = set(self.schema.of_type(ColumnType.NUMBER))
        cats = set(self.schema.of_type(ColumnType.CATEGORY))
        if set(self.means) != numbers or set(self.stds) != numbers:
            raise ValueError("means and stds must have exactly the schema's number columns")
        for name in numbers:
            if not math.isfinite(self.means[name]):
                raise ValueError(f"mean of {name!r} is not finite")
            if not (math.isfinite(self.stds[name]) and self.stds[name] > 0):
                raise ValueError(f"std of {name!r} must be a positive finite number")
        if set(self.categories) != cats:
            raise ValueError("categories must have exactly the schema's category columns")
        frozen_categories = {k: tuple(v) for k, v in self.categories.items()}
        for name, values in frozen_categories.items():
            if not all(isinstance(v, str) for v in values) or len(set(values)) != len(values):
                raise ValueError(f"categories of {name!r} must be distinct texts")
        if self.policy is MissingPolicy.REJECT:
            if self.impute:
                raise ValueError("the reject policy imputes nothing; impute must be empty")
        elif set(self.impute) != numbers | cats:
            raise ValueError("impute must have a value for every feature column")
        for name, fill in self.impute.items():
            if name in numbers and (isinstance(fill, bool | str) or not math.isfinite(fill)):
                raise ValueError(f"impute value of number column {name!r} must be a number")
            if name in cats and fill not in frozen_categories[name]:
                raise ValueError(f"impute value of category column {name!r} is not a category")
        classes = tuple(self.classes)
        if (
            not classes
            or not all(isinstance(c, str) for c in classes)
            or len(set(classes)) != len(classes)
        ):
            raise ValueError("classes must be distinct texts, at least one")
        names: list[str] = []
        for col in self.schema.columns:
            if col.type.encoded is ColumnType.NUMBER:
                names.append(col.name)
            else:
                names.extend(f"{col.name}={v}" for v in frozen_categories[col.name])
        setter = object.__setattr__
        # Own copies, so the caller's dicts cannot change the plan afterwards.
        setter(self, "means", {k: float(v) for k, v in self.means.items()})
        setter(self, "stds", {k: float(v) for k, v in self.stds.items()})
        setter(self, "categories", frozen_categories)
        setter(self, "impute", dict(self.impute))
        setter(self, "classes", classes)
        setter(self, "feature_names", tuple(names))

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def transform_features(
        self, df: pd.DataFrame, *, party: str, source: str
    ) -> npt.NDArray[np.float32]:
        """Features ``(n_rows, num_features)`` as float32; the label column is not needed."""
        typed = read_typed(df, self.schema, party=party, source=source, label=False)
        return self._features(typed, party=party, source=source)

    def _features(self, df: pd.DataFrame, *, party: str, source: str) -> npt.NDArray[np.float32]:
        n = len(df)
        out = np.zeros((n, len(self.feature_names)), dtype=np.float32)
        offset = 0
        for col in self.schema.columns:
            name = col.name
            if col.type.encoded is ColumnType.NUMBER:
                values = _numbers(df[name])
                missing = np.isnan(values)
                if missing.any():
                    self._check_may_impute(missing, name, party=party, source=source)
                    values = np.where(missing, float(self.impute[name]), values)
                out[:, offset] = (values - self.means[name]) / self.stds[name]
                offset += 1
            else:
                known = self.categories[name]
                index = self._category_index(df[name], name, party=party, source=source)
                out[np.arange(n), offset + index] = 1.0
                offset += len(known)
        return out

    def transform(
        self, df: pd.DataFrame, *, party: str, source: str, typed: bool = False
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(X, y)``: float32 features ``(n, num_features)`` and int64 class indices ``(n,)``.

        Missing feature values are imputed by the plan's policy (or raise
        MissingValueError under ``REJECT``); a category value or label the plan does not
        know raises DataError naming party, column, value and row. ``typed``: ``df`` was
        already read with the plan's schema (:func:`read_typed`).
        """
        typed_df = df if typed else read_typed(df, self.schema, party=party, source=source)
        features = self._features(typed_df, party=party, source=source)
        label = self.schema.label
        codes, texts = _label_codes(typed_df, label, party=party, source=source)
        lookup = {c: i for i, c in enumerate(self.classes)}
        mapped = np.array([lookup.get(t, -1) for t in texts], dtype=np.int64)
        y = mapped[codes] if len(texts) else np.zeros(0, dtype=np.int64)
        unknown = y < 0
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"{whose(party)} label column {label!r} has value {texts[codes[row]]!r} "
                f"({source}, row {row + 1}{_more(int(unknown.sum()))}) that is not one of "
                f"the job's classes {listing(self.classes)}. Remove or relabel those rows."
            )
        return features, y.astype(np.int64)

    def _check_may_impute(
        self, missing: npt.NDArray[np.bool_], column: str, *, party: str, source: str
    ) -> None:
        if self.policy is not MissingPolicy.REJECT:
            return
        row = int(np.flatnonzero(missing)[0]) + 1
        # rows being scored meet a policy fixed when the model was trained; a party's rows
        # meet its job's, which the job can change
        fix = (
            "Fill them in: the model was trained with that policy (a model trained with "
            'data.missing = "mean" or "constant" fills them itself)'
            if party == SCORED
            else 'Fill them in, or declare data.missing = "mean" or "constant" in the job'
        )
        raise MissingValueError(
            f"{whose(party)} column {column!r} has {int(missing.sum())} missing value(s) "
            f'({source}, first: row {row}) and data.missing = "reject". {fix}.'
        )

    def _category_index(
        self, series: pd.Series, column: str, *, party: str, source: str
    ) -> npt.NDArray[np.int64]:
        known = self.categories[column]
        lookup = {v: i for i, v in enumerate(known)}
        codes, texts = texts_of(series)
        mapped = np.array([lookup.get(t, -1) for t in texts], dtype=np.int64)
        missing = codes < 0
        index = np.where(missing, 0, mapped[np.maximum(codes, 0)] if len(texts) else 0)
        unseen = ~missing & (index < 0)
        if unseen.any():
            row = int(np.flatnonzero(unseen)[0])
            raise DataError(
                f"{whose(party)} column {column!r} has value {texts[codes[row]]!r} ({source}, "
                f"row {row + 1}{_more(int(unseen.sum()))}) that no party had when the "
                f"preprocessing plan was made; known values: {listing(known)}. Recode or "
                "remove those rows, or include such rows at a party during setup."
            )
        if missing.any():
            self._check_may_impute(missing, column, party=party, source=source)
            index = np.where(missing, lookup[str(self.impute[column])], index)
        return index.astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_json` gives back an equal plan."""
        return {
            "schema": self.schema.to_json(),
            "policy": self.policy.value,
            "means": dict(self.means),
            "stds": dict(self.stds),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "impute": dict(self.impute),
            "classes": list(self.classes),
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreprocessPlan:
        """Inverse of :meth:`to_json`; a malformed plan raises ProtocolError."""
        if not isinstance(data, Mapping) or not isinstance(data.get("schema"), Mapping):
            raise ProtocolError("malformed preprocessing plan: no 'schema' mapping")
        schema = TableSchema.from_json(data["schema"])
        try:
            cats = data["categories"]
            plan = cls(
                schema=schema,
                policy=MissingPolicy(data["policy"]),
                means={str(k): _json_float(v) for k, v in data["means"].items()},
                stds={str(k): _json_float(v) for k, v in data["stds"].items()},
                categories={str(k): tuple(v) for k, v in cats.items()},
                impute={
                    str(k): v if isinstance(v, str) else _json_float(v)
                    for k, v in data["impute"].items()
                },
                classes=tuple(data["classes"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"malformed preprocessing plan: {exc}") from None
        names = data.get("feature_names")
        if names is not None and list(names) != list(plan.feature_names):
            raise ProtocolError("malformed preprocessing plan: feature_names do not match")
        return plan


# -- helpers ------------------------------------------------------------------------------


def _json_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def read_typed(
    df: pd.DataFrame,
    schema: TableSchema,
    *,
    party: str,
    source: str,
    label: bool = True,
) -> pd.DataFrame:
    """The schema's columns of ``df`` read with their types (:mod:`fedsilo.data.typed`)."""
    found = [str(c) for c in df.columns]
    lacking = [c for c in schema.names if c not in found]
    if lacking:
        raise SchemaError(
            f"{whose(party)} lacks column(s) {listing(lacking)} of the shared schema "
            f"({source}); columns found: {listing(found)}. Every party needs the same columns."
        )
    if label and schema.label not in found:
        raise DataError(
            f"{whose(party)}: label column {schema.label!r} (data.label) is not in {source}; "
            f"columns found: {listing(found)}."
        )
    return typed_frame(df, schema_columns(schema, label=label), party=party, source=source)


def _numbers(series: pd.Series) -> npt.NDArray[np.float64]:
    """A typed number column (float64, NaN for a missing value) as an array."""
    return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def _label_codes(
    df: pd.DataFrame, label: str, *, party: str, source: str
) -> tuple[npt.NDArray[np.int64], list[str]]:
    if label not in df.columns:
        raise DataError(
            f"{whose(party)}: label column {label!r} (data.label) is not in {source}; "
            f"columns found: {listing([str(c) for c in df.columns])}."
        )
    codes, texts = texts_of(df[label])
    missing = codes < 0
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise MissingValueError(
            f"{whose(party)} label column {label!r} is empty in {int(missing.sum())} row(s) "
            f"({source}, first: row {row}). Labels are never imputed: fill in or remove "
            "those rows."
        )
    return codes, texts


def _more(count: int) -> str:
    return f" and {count - 1} more row(s)" if count > 1 else ""
