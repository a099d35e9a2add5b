"""Shared fixtures: small jobs that run in seconds."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def small_job(**overrides: Any) -> dict[str, Any]:
    """A breast-cancer job of a few rounds: fast enough for many tests."""
    job: dict[str, Any] = {
        "name": "small",
        "seed": 3,
        "rounds": 3,
        "data": {"dataset": "breast-cancer", "num_parties": 3, "partition": "iid"},
        "model": {"name": "logreg"},
        "training": {"epochs": 1, "batch_size": 32, "learning_rate": 0.1},
        "selection": {"min_parties": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    return job


@pytest.fixture
def job_dict() -> dict[str, Any]:
    return small_job()


@functools.cache
def _dataframes_example() -> Any:
    path = Path(__file__).resolve().parents[1] / "examples" / "use_model" / "dataframes.py"
    spec = importlib.util.spec_from_file_location("dataframes_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bank_frame(rows: int, seed: int) -> pd.DataFrame:
    """A bank's customers: id, income (number), region (category), default (label); the rows
    examples/use_model/dataframes.py trains on."""
    frame: pd.DataFrame = _dataframes_example().bank(rows, seed)
    return frame
