"""How a vertical party's file columns become its features: learnt at training, kept in its part.

Each party encodes its own columns (nothing about them leaves it). A
:class:`PartyEncoding` records every choice that encoding makes, so that a scoring job applies
the **training run's** choices to a file of new customers instead of making them again from
that file (a customer's features, and so its score, must not depend on the other rows of the
batch):

* each feature column's **type** (``number``, ``boolean``, ``date``: one feature; ``category``:
  one-hot), from the job's declaration or inferred from the training file
  (:func:`fedsilo.data.typed.infer_columns`), and a date's format;
* each category column's **values** (the one-hot features, in order): the sorted values of the
  party's training file, plus ``"missing"`` under ``missing = "constant"`` (so a missing value
  always encodes);
* the **missing-value policy** and each column's **fill**: ``constant``: ``0.0`` or
  ``"missing"``; ``mean``: the mean (numbers) or most frequent value (categories; ties go to
  the first in sorted order) of the party's **training rows**, the rows its standardization
  statistics come from too (:meth:`PartyEncoding.fit`, at ``VERTICAL_SETUP``, once the
  held-out rows are known); ``reject``: none (a missing value is refused);
* which file columns were read: all but the ID and label, or the ones the job listed
  (``features``), so a scoring file with other columns is caught.

At scoring (:meth:`PartyEncoding.encode` with ``run``) a category value the training data did
not have is refused, naming party, file, column, value and row (as horizontal prediction does,
:mod:`fedsilo.data.preprocess`): the model has no feature for it, and encoding it as "no known
category" would score the customer as if the value were unknown without saying so.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsilo.data.preprocess import CONSTANT_CATEGORY_FILL, CONSTANT_NUMBER_FILL
from fedsilo.data.tabular import ColumnSchema, ColumnType, MissingPolicy, listing
from fedsilo.errors import DataError, MissingValueError

FloatArray = npt.NDArray[np.float64]


class FeatureColumn(BaseModel):
    """One file column among a party's features: its type, category values and fill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    type: ColumnType
    format: str | None = None
    categories: list[str] | None = None
    """A category column's values: one feature each, in this order (``None`` otherwise)."""
    fill: float | str | None = None
    """What a missing value becomes (``None``: refused, or not yet fitted)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        is_category = self.type is ColumnType.CATEGORY
        if is_category != (self.categories is not None):
            raise ValueError(f"column {self.name!r}: categories go with category columns only")
        if self.categories is not None:
            if not self.categories or len(set(self.categories)) != len(self.categories):
                raise ValueError(f"column {self.name!r}: categories must be distinct, at least 1")
            if self.fill is not None and self.fill not in self.categories:
                raise ValueError(f"column {self.name!r}: fill {self.fill!r} is not a category")
        elif self.fill is not None and (isinstance(self.fill, str) or not math.isfinite(self.fill)):
            raise ValueError(f"column {self.name!r}: a number column's fill is a finite number")
        if self.format is not None and self.type is not ColumnType.DATE:
            raise ValueError(f"column {self.name!r}: only a date column takes a format")
        return self

    @property
    def features(self) -> list[str]:
        """The column's feature names: its name, or ``"column=value"`` per category."""
        if self.categories is None:
            return [self.name]
        return [f"{self.name}={v}" for v in self.categories]


class PartyEncoding(BaseModel):
    """A party's columns -> features, as its training run did it (saved in its model part)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing: MissingPolicy = MissingPolicy.REJECT
    columns: list[FeatureColumn] = Field(min_length=1)
    listed: bool = False
    """The job listed the party's features (``features``): its file's other columns were
    ignored. Otherwise every column but the ID and the label was a feature."""
    label: str | None = None
    """The guest's label column (never a feature; a scoring file may hold it)."""

    @model_validator(mode="after")
    def _fills(self) -> Self:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"feature columns {names} repeat a name")
        if self.missing is MissingPolicy.REJECT and any(c.fill is not None for c in self.columns):
            raise ValueError('missing = "reject" fills nothing: no column has a fill')
        return self

    @classmethod
    def of_numbers(cls, names: list[str]) -> PartyEncoding:
        """Number columns ``names``, nothing missing (a role built from a bare array)."""
        return cls(columns=[FeatureColumn(name=n, type=ColumnType.NUMBER) for n in names])

    @classmethod
    def of_training_file(
        cls,
        typed: pd.DataFrame,
        schema: list[ColumnSchema],
        missing: MissingPolicy,
        *,
        listed: bool,
        label: str | None,
    ) -> PartyEncoding:
        """The encoding of a training file's typed columns: types, category values (the file's
        sorted values), constant fills; ``mean`` fills come later from the training rows."""
        columns = []
        for col in schema:
            categories: list[str] | None = None
            fill: float | str | None = None
            if col.type is ColumnType.CATEGORY:
                series = typed[col.name]
                values = {str(v) for v, hole in zip(series, series.isna(), strict=True) if not hole}
                if missing is MissingPolicy.CONSTANT:
                    values.add(CONSTANT_CATEGORY_FILL)
                    fill = CONSTANT_CATEGORY_FILL
                categories = sorted(values)
            elif missing is MissingPolicy.CONSTANT:
                fill = CONSTANT_NUMBER_FILL
            columns.append(
                FeatureColumn(
                    name=col.name,
                    type=col.type,
                    format=col.format,
                    categories=categories,
                    fill=fill,
                )
            )
        return cls(missing=missing, columns=columns, listed=listed, label=label)

    @property
    def feature_names(self) -> list[str]:
        return [f for c in self.columns for f in c.features]

    @property
    def fitted(self) -> bool:
        """Every fill is known (``reject`` has none to know)."""
        return self.missing is MissingPolicy.REJECT or all(c.fill is not None for c in self.columns)

    def _blocks(self) -> list[tuple[FeatureColumn, slice]]:
        out, start = [], 0
        for col in self.columns:
            width = len(col.features)
            out.append((col, slice(start, start + width)))
            start += width
        return out

    def encode(self, typed: pd.DataFrame, *, where: str, run: str | None = None) -> FloatArray:
        """The features of ``typed`` (the columns read with their types): numbers as they are,
        categories one-hot; a missing value gets its column's fill, or NaN (a row's whole
        one-hot block) while a ``mean`` fill waits for the training rows (:meth:`fit`).

        Refused, naming ``where``, the column and the first row (1-based): a missing value under
        ``reject``; a category value not among the column's values. ``run`` names the training
        run when scoring (the policy and values are that run's, not the scoring job's).
        """
        n = len(typed)
        out = np.zeros((n, len(self.feature_names)), dtype=np.float64)
        for col, block in self._blocks():
            series = typed[col.name]
            holes = series.isna().to_numpy()
            if holes.any() and self.missing is MissingPolicy.REJECT:
                raise self._refuse_missing(col.name, holes, where=where, run=run)
            if col.categories is None:
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
                fill = np.nan if col.fill is None else float(col.fill)
                out[:, block.start] = np.where(holes, fill, values)
                continue
            index = {v: i for i, v in enumerate(col.categories)}
            texts = series.astype(object).to_numpy()
            codes = np.array(
                [
                    -1 if hole else index.get(str(t), -2)
                    for t, hole in zip(texts, holes, strict=True)
                ],
                dtype=np.int64,
            )
            unseen = np.flatnonzero(codes == -2)
            if unseen.size:
                raise self._refuse_unseen(col, str(texts[unseen[0]]), unseen, where=where, run=run)
            if col.fill is not None:
                codes[holes] = index[str(col.fill)]
            rows = np.flatnonzero(codes >= 0)
            out[rows, block.start + codes[rows]] = 1.0
            out[np.flatnonzero(codes == -1), block] = np.nan
        return out

    def fit(self, training: FloatArray, *, where: str) -> PartyEncoding:
        """The ``mean`` fills from the party's training rows (their encoded features, NaN where
        missing): each number column's mean, each category column's most frequent value (ties:
        the first in sorted order). Other policies have nothing to learn."""
        if self.missing is not MissingPolicy.MEAN:
            return self
        columns = []
        for col, block in self._blocks():
            values = training[:, block]
            present = ~np.isnan(values).any(axis=1)
            if not present.any():
                raise DataError(
                    f"{where}: feature column {col.name!r} has no value in the party's "
                    f'{len(training)} training rows, so missing = "mean" has nothing to fill '
                    'it with. Fill the column in, drop it, or use missing = "constant".'
                )
            if col.categories is None:
                fill: float | str = float(values[present, 0].mean())
            else:
                fill = col.categories[int(np.argmax(values[present].sum(axis=0)))]
            columns.append(col.model_copy(update={"fill": fill}))
        return self.model_copy(update={"columns": columns})

    def fill(self, features: FloatArray) -> FloatArray:
        """``features`` (from :meth:`encode`) with the fills of a fitted encoding in its NaNs."""
        out = features.copy()
        for col, block in self._blocks():
            if col.fill is None:
                continue
            holes = np.isnan(out[:, block]).any(axis=1)
            if col.categories is None:
                out[holes, block.start] = float(col.fill)
            else:
                one_hot = np.zeros(len(col.categories))
                one_hot[col.categories.index(str(col.fill))] = 1.0
                out[holes, block] = one_hot
        return out

    def _refuse_missing(
        self, column: str, holes: npt.NDArray[np.bool_], *, where: str, run: str | None
    ) -> MissingValueError:
        count, row = int(holes.sum()), int(np.flatnonzero(holes)[0]) + 1
        found = (
            f"{where}: feature column {column!r} has {count} missing value(s) (first: row {row})"
        )
        if run is None:
            return MissingValueError(
                f'{found} and missing = "reject" (the default). Fill them in, or set '
                'missing = "mean" or "constant" on the party in the job.'
            )
        return MissingValueError(
            f"{found}. Scoring fills missing values as the training run {run!r} did, and it "
            'used missing = "reject" for this party (its saved part says so): fill them in, or '
            'retrain with missing = "mean" or "constant" on this party.'
        )

    def _refuse_unseen(
        self,
        col: FeatureColumn,
        value: str,
        rows: npt.NDArray[np.int64],
        *,
        where: str,
        run: str | None,
    ) -> DataError:
        assert col.categories is not None
        more = f" and {len(rows) - 1} more row(s)" if len(rows) > 1 else ""
        trained = "training data" if run is None else f"training data (run {run!r})"
        return DataError(
            f"{where}: column {col.name!r} has value {value!r} (row {rows[0] + 1}{more}), which "
            f"this party's {trained} did not have: the model has no feature for it. Known "
            f"values: {listing(col.categories)}. Recode or remove those rows, or retrain with "
            "data that holds the value."
        )
