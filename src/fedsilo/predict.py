"""Score new rows with a trained horizontal model: ``fedsilo.load_model`` and ``fedsilo predict``.

:func:`load_model` reads a run directory's ``model.safetensors`` (a simulation's or a deployed
job's: one format, :mod:`fedsilo.model_file`) and returns a :class:`Model` with a
scikit-learn feel::

    model = fedsilo.load_model("runs/hospitals")
    model.predict_proba(df)      # (n, classes) float64, columns in model.classes order
    model.predict(df)            # the class label of each row
    model.predictions(df)        # a table: id column (if the job declared one), prediction,
                                 # proba_<class> for each class

New rows go through the job's own preprocessing plan (the schema, means, standard deviations,
category sets and missing-value policy the parties agreed on), so a row is encoded exactly as
in training and evaluation: scoring the simulation's central test rows reproduces its global
metrics bit for bit. Rows are checked against the saved schema: a missing column, text in a
number column, a category no party had, or a missing value under ``data.missing = "reject"``
raises an error naming the column and the (1-based) row. Extra columns (the label, notes) are
ignored. Files and DataFrames are read by the typed reader training uses
(:func:`fedsilo.data.typed.read_raw`, then the plan casts the schema's columns with it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from torch import nn

from fedsilo.data.preprocess import PreprocessPlan
from fedsilo.data.tabular import SCORED  # the scored rows are no party's: messages say "input"
from fedsilo.data.typed import read_raw
from fedsilo.errors import DataError, ModelError, SchemaError
from fedsilo.model_file import ModelMeta, read_model
from fedsilo.models import build_model, set_params
from fedsilo.training import predict_proba

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBA = "proba_"


@dataclass(frozen=True)
class Model:
    """A trained global model with its preprocessing: scores DataFrames, files or images."""

    meta: ModelMeta
    module: nn.Module
    plan: PreprocessPlan | None
    path: Path

    @property
    def classes(self) -> tuple[str, ...]:
        """Class labels in the order of ``predict_proba``'s columns."""
        return tuple(self.meta.classes)

    @property
    def id_column(self) -> str | None:
        """The job's declared id column (``data.id``), kept in :meth:`predictions`."""
        return self.meta.id_column

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The columns a row must have (tabular models), in the training schema's order."""
        return () if self.plan is None else self.plan.schema.names

    def predict_proba(
        self, data: pd.DataFrame | npt.NDArray[np.floating], *, source: str = "DataFrame"
    ) -> npt.NDArray[np.float64]:
        """Class probabilities ``(n, len(classes))``: a DataFrame for tabular models, an
        array ``(n, *input_shape)`` for image models."""
        features = self._features(data, source=source)
        if len(features) == 0:
            return np.zeros((0, len(self.classes)))
        return np.asarray(predict_proba(self.module, features), dtype=np.float64)

    def predict(
        self, data: pd.DataFrame | npt.NDArray[np.floating], *, source: str = "DataFrame"
    ) -> npt.NDArray[np.object_]:
        """The most probable class label of each row (ties: the first class)."""
        return self._labels(self.predict_proba(data, source=source))

    def _labels(self, proba: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
        picked: npt.NDArray[np.object_] = np.asarray(self.classes, dtype=object)[
            proba.argmax(axis=1)
        ]
        return picked

    def predictions(self, table: pd.DataFrame, *, source: str = "DataFrame") -> pd.DataFrame:
        """One row per input row: the id column (when the job declared one), ``prediction``
        and ``proba_<class>`` for every class."""
        proba = self.predict_proba(table, source=source)
        out = pd.DataFrame(index=range(len(table)))
        if self.id_column is not None:
            if self.id_column not in table.columns:
                raise SchemaError(
                    f"{source} lacks the id column {self.id_column!r} the job declared "
                    "(data.id); predictions keep it so that rows can be matched. Add the "
                    "column."
                )
            out[self.id_column] = table[self.id_column].to_numpy()
        out[PREDICTION] = self._labels(proba)
        for i, name in enumerate(self.classes):
            out[f"{PROBA}{name}"] = proba[:, i]
        return out

    def predict_file(self, path: str | Path) -> pd.DataFrame:
        """:meth:`predictions` for a ``.csv`` or ``.parquet`` file."""
        path = Path(path)
        if not path.is_file():  # read_raw's wording is for a party's configured data path
            raise DataError(
                f"cannot score {path}: {'it is not a file' if path.exists() else 'no such file'}"
                ". Give the path of a .csv or .parquet file with the model's columns."
            )
        return self.predictions(read_raw(path, party=SCORED), source=str(path))

    def _features(
        self, data: pd.DataFrame | npt.NDArray[np.floating], *, source: str
    ) -> npt.NDArray[np.float32]:
        shape = tuple(self.meta.model_spec.input_shape)
        if self.plan is None:
            if isinstance(data, pd.DataFrame):
                raise ModelError(
                    f"model {self.path} was trained on images of shape {shape}: pass an array "
                    f"shaped (rows, {', '.join(map(str, shape))}), not a table"
                )
            images = np.asarray(data, dtype=np.float32)
            if images.shape[1:] != shape:
                raise ModelError(
                    f"model {self.path} takes images of shape {shape}; got {images.shape[1:]}"
                )
            return images
        if not isinstance(data, pd.DataFrame):
            raise ModelError(
                f"model {self.path} was trained on a table with columns "
                f"{list(self.feature_columns)[:10]}...: pass a pandas DataFrame"
            )
        self._check_columns(data, source=source)
        ignored = sorted(
            str(c) for c in data.columns if c not in self.feature_columns and c != self.id_column
        )
        if ignored:
            log.info("%s: columns %s are not model features; ignored", source, ignored)
        return self.plan.transform_features(data, party=SCORED, source=source)

    def _check_columns(self, table: pd.DataFrame, *, source: str) -> None:
        found = [str(c) for c in table.columns]
        lacking = [c for c in self.feature_columns if c not in found]
        if lacking:
            shown = ", ".join(repr(c) for c in lacking[:20])
            more = f" and {len(lacking) - 20} more" if len(lacking) > 20 else ""
            raise SchemaError(
                f"{source} lacks column(s) {shown}{more} that model {self.path} was trained on; "
                f"columns found: {', '.join(repr(c) for c in found[:20]) or '(none)'}. Every "
                "feature column of the training data is needed to score a row."
            )


def load_model(location: str | Path) -> Model:
    """The model of a run directory (simulation or deployed job), or of a model file.

    Raises :class:`~fedsilo.errors.ModelError` naming the file when it is missing, not a
    fedsilo model, or its weights do not fit its own model spec.
    """
    meta, params, path = read_model(location)
    spec = meta.model_spec.spec()
    module = build_model(spec, seed=0)
    try:
        set_params(module, params)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(
            f"{path}: the saved weights do not fit the saved model spec {spec.name!r}: {first}"
        ) from None
    module.eval()
    return Model(meta=meta, module=module, plan=meta.plan(), path=path)
