"""The saved global model of a horizontal job: one safetensors file, typed metadata, no pickle.

``model.safetensors`` holds the global parameters (named arrays in the model's ``state_dict``
order) and one metadata key ``fedsilo`` whose JSON is a :class:`ModelMeta`::

    {"format": 1, "fedsilo_version": "0.1.0", "job": "hospitals",
     "model_spec": {"name": "logreg", "input_shape": [30], "num_classes": 2, ...},
     "classes": ["benign", "malignant"], "label": "label", "id_column": null,
     "preprocess": {<the shared PreprocessPlan: schema, means, stds, categories, ...>}}

The same file is written by a simulation (:meth:`fedsilo.results.Result.save`) and by a
deployed job's server (:mod:`fedsilo.deploy.jobs`), so :func:`read_model` (and
``fedsilo predict``) read either. ``preprocess`` is ``null`` for image models. A file that is
not a fedsilo model, or whose metadata or arrays disagree with each other, raises
:class:`~fedsilo.errors.ModelError` naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from fedsilo.data.preprocess import PreprocessPlan
from fedsilo.errors import ModelError, ProtocolError
from fedsilo.models import ModelSpec, Params

MODEL_FILE = "model.safetensors"
META_KEY = "fedsilo"
FORMAT: Literal[1] = 1


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpecDoc(_Doc):
    """:class:`~fedsilo.models.ModelSpec` as saved."""

    name: str = Field(min_length=1)
    input_shape: list[int] = Field(min_length=1)
    num_classes: int = Field(ge=1)
    hidden: list[int] = Field(default_factory=lambda: [128])
    options: dict[str, Any] = Field(default_factory=dict)

    def spec(self) -> ModelSpec:
        return ModelSpec.from_json(self.model_dump())


class ModelMeta(_Doc):
    """What a saved model carries besides its weights: enough to rebuild and use it alone."""

    format: Literal[1] = FORMAT
    fedsilo_version: str
    job: str | None = None
    model_spec: ModelSpecDoc
    classes: list[str] = Field(min_length=1)
    label: str | None = None
    id_column: str | None = None
    preprocess: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelMeta:
        if len(self.classes) != self.model_spec.num_classes:
            raise ValueError(
                f"classes lists {len(self.classes)} classes but model_spec.num_classes is "
                f"{self.model_spec.num_classes}"
            )
        if self.preprocess is not None:
            plan = self.plan()
            assert plan is not None
            if list(plan.classes) != self.classes:
                raise ValueError("preprocess.classes differ from classes")
            if self.model_spec.input_shape != [plan.num_features]:
                raise ValueError(
                    f"model_spec.input_shape is {self.model_spec.input_shape} but the "
                    f"preprocessing plan makes {plan.num_features} features"
                )
            if self.label is not None and self.label != plan.schema.label:
                raise ValueError("label differs from preprocess.schema.label")
        return self

    def plan(self) -> PreprocessPlan | None:
        """The shared preprocessing plan (``None`` for image models)."""
        if self.preprocess is None:
            return None
        try:
            return PreprocessPlan.from_json(self.preprocess)
        except ProtocolError as exc:
            raise ValueError(f"preprocess: {exc}") from None


def write_model(path: Path, meta: ModelMeta, params: Params) -> None:
    """Write the parameters and ``meta`` to ``path`` (the same inputs give the same bytes)."""
    # One metadata key: safetensors keeps metadata in a hash map, so several keys would be
    # written in a varying order and the same model would not give the same bytes.
    text = json.dumps(
        meta.model_dump(mode="json"), sort_keys=True, allow_nan=False, separators=(",", ":")
    )
    arrays = {k: np.ascontiguousarray(v) for k, v in params.items()}
    save_file(arrays, str(path), {META_KEY: text})


def model_path(location: str | Path) -> Path:
    """The model file of a run directory (or the file itself); ModelError if there is none."""
    path = Path(location)
    if path.is_dir():
        found = path / MODEL_FILE
        if found.is_file():
            return found
        if (path / "models").is_dir() or _run_kind(path) == "vertical":
            raise ModelError(
                f"{path} is a vertical run: each party keeps its own part of the model (under "
                "models/ in a simulation, at the party in a deployment), so no one file predicts "
                "alone. Score new customers "
                "with the parties together (a vertical scoring job)."
            )
        raise ModelError(
            f"{path} holds no {MODEL_FILE}. Point at the run directory a horizontal "
            "`fedsilo simulate` or deployed job wrote (or at its model.safetensors)."
        )
    if not path.exists():
        raise ModelError(
            f"model {path} does not exist. Point at a run directory or its {MODEL_FILE}."
        )
    return path


def _run_kind(run_dir: Path) -> str | None:
    """``job.kind`` from a run directory's metrics.json, if it has a readable one."""
    try:
        doc = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    job = doc.get("job") if isinstance(doc, dict) else None
    kind = job.get("kind") if isinstance(job, dict) else None
    return kind if isinstance(kind, str) else None


def read_model(location: str | Path) -> tuple[ModelMeta, Params, Path]:
    """The metadata and parameters of a run directory's model (or of a model file).

    Returns ``(meta, params, path of the file read)``. Raises :class:`ModelError` naming the
    file for a missing, unreadable or non-fedsilo file and for metadata that does not validate
    (naming the field).
    """
    path = model_path(location)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
            params: Params = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable safetensors file: {exc}") from None
    if raw is None:
        raise ModelError(
            f"{path} has no {META_KEY!r} metadata: it was not written by fedsilo, so its "
            "preprocessing and classes are unknown."
        )
    try:
        meta = ModelMeta.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ModelError(f"{path}: the model's metadata is invalid: {problems}") from None
    return meta, params, path
