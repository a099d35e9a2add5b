from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _make_data() -> Any:
    spec = importlib.util.spec_from_file_location(
        "vertical_make_data", EXAMPLES / "vertical_breast_cancer" / "make_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def breast_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    guest, host = _make_data().write(tmp_path_factory.mktemp("breast"))
    return Path(guest), Path(host)


@pytest.fixture
def breast_job(breast_files: tuple[Path, Path]) -> Callable[..., dict[str, Any]]:
    """A vertical job dict over the FATE-style breast-cancer split; keyword overrides."""

    def make(scheme: str = "ckks", **lr: Any) -> dict[str, Any]:
        guest, host = breast_files
        params = {
            "epochs": 4,
            "batch_size": 128,
            "learning_rate": 0.3,
            "l2": 0.01,
            "decay": 0.1,
            "tolerance": 1e-6,
        }
        params.update(lr)
        return {
            "kind": "vertical",
            "name": "bc",
            "seed": 7,
            "parties": [
                {"name": "bank", "path": str(guest), "id_column": "id", "label": "y"},
                {"name": "provider", "path": str(host), "id_column": "id"},
            ],
            "he": {"scheme": scheme, "key_bits": 1024},
            "hetero_lr": params,
        }

    return make
