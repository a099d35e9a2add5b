"""The metrics.json core every training run writes (horizontal, hetero LR, SecureBoost).

::

    {
      "fedsilo_version": "0.1.0",
      "job": {"name": ..., "kind": "horizontal" | "vertical", "seed": ..., "rounds": ...,
              "config": {...the job as validated...}},
      "final": {"global": {metric: value},          # held-out: the model's released metrics
                "parties": {party: {metric: value}}},  # each party's own held-out rows
      "baseline": {metric: value} | null,           # the same model trained on pooled data
      "history": [{"round" | "epoch" | "tree": i, "duration_s": s, ...}, ...],
      "wall_time_s": s,
      "tracking": {"mlflow": {...}, "tensorboard": {...}},  # only for a tracked run
      "importance": {scope: {"role": ..., "features": n, "total": {...},  # or null
                             "by_feature": {name: {...}} | null}},
      ...                                           # beside it: "data" (horizontal),
    }                                               # "vertical" (alignment, roles, parts)

One metric vocabulary: ``loss`` is the log loss (cross-entropy) everywhere; ``accuracy``,
``precision``, ``recall``, ``f1``, ``auc``, ``ks``, ``examples``. A number that is not finite
is written as ``null``: NaN and infinity never reach the file (:func:`finite`, and
``allow_nan=False`` in :func:`write_json`).

``importance``: per party (vertical: hetero LR's standardized ``coefficient``, SecureBoost's
``splits`` and ``gain``; a party's ``by_feature`` only where it allows its names, else its
``total`` alone) or ``"global"`` (horizontal ``logreg``: the standardized coefficients,
averaged in absolute value over the classes; other tabular models in simulation: permutation
importance on the central test split, ``accuracy_drop`` and ``loss_increase``); ``null`` for a
model without one.

``save(out_dir)`` of every result returns :data:`SAVE_KEYS` -> path (``model`` only where the
model is on this machine: a deployed vertical job's parts stay with the parties).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fedsilo import __version__

SAVE_KEYS = ("model", "metrics_json", "metrics_csv", "report")


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None``, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class TrainingJob(Protocol):
    """What the core reads of a job (horizontal ``JobConfig`` or ``VerticalJobConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def core(
    job: TrainingJob,
    *,
    final_global: Mapping[str, float],
    final_parties: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, float] | None,
    history: list[dict[str, Any]],
    wall_time_s: float,
    tracking: Mapping[str, Any] | None = None,
    importance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The shared part of metrics.json; callers add their sections beside it.

    ``tracking`` (where a tracked run was logged: MLflow URI, experiment and run ids,
    TensorBoard directory) is written as ``tracking`` when given.
    """
    doc = {
        "fedsilo_version": __version__,
        "job": {
            "name": job.name,
            "kind": job.kind,
            "seed": job.seed,
            "rounds": job.rounds,  # rounds, epochs or trees planned
            "config": job.model_dump(mode="json"),
        },
        "final": {
            "global": finite(dict(final_global)),
            "parties": {p: finite(dict(m)) for p, m in final_parties.items()},
        },
        "baseline": None if baseline is None else finite(dict(baseline)),
        "history": finite(history),
        "wall_time_s": wall_time_s,
        "importance": None if not importance else finite(dict(importance)),
    }
    if tracking is not None:
        doc["tracking"] = dict(tracking)
    return doc


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """metrics.json: indented, every non-finite number as ``null``."""
    path.write_text(json.dumps(finite(doc), indent=2, allow_nan=False) + "\n", encoding="utf-8")
