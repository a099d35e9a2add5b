"""Build a PyTorch classifier from a :class:`ModelSpec`.

Built-in names: ``logreg`` (multinomial logistic regression), ``mlp`` (ReLU layers of the
given ``hidden`` sizes) and ``cnn`` (two conv blocks for ``(C, H, W)`` images, LeCun-style).
Anything else must be an import path ``package.module:factory``; the factory is called as
``factory(input_shape=..., num_classes=..., **options)`` and must return a ``torch.nn.Module``
mapping a batch of inputs to ``num_classes`` logits.
"""

from __future__ import annotations

import importlib
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedsilo.errors import ModelError

MODEL_NAMES = ("logreg", "mlp", "cnn")
# torch's initialisers draw from its global generator: one seeded build at a time, so that
# simulated parties set up in parallel threads cannot interleave their draws.
_SEEDED_BUILD = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Everything a party needs to build the same model as the coordinator."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = (128,)
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "hidden": list(self.hidden),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelSpec:
        return cls(
            name=str(raw["name"]),
            input_shape=tuple(int(v) for v in raw["input_shape"]),
            num_classes=int(raw["num_classes"]),
            hidden=tuple(int(v) for v in raw.get("hidden", (128,))),
            options=dict(raw.get("options", {})),
        )


def _mlp(in_features: int, hidden: tuple[int, ...], num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ModelError(
            f"model 'cnn' needs image input shaped (channels, height, width); this data has "
            f"shape {input_shape}. Use 'mlp' or 'logreg' for tabular data."
        )
    channels, height, width = input_shape
    if min(height, width) < 4:
        raise ModelError(f"model 'cnn' needs images of at least 4x4 pixels, got {height}x{width}")
    flat = 32 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Conv2d(channels, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def _from_import_path(spec: ModelSpec) -> nn.Module:
    module_name, _, attr = spec.name.partition(":")
    if not module_name or not attr:
        raise ModelError(
            f"unknown model {spec.name!r}: use one of {', '.join(MODEL_NAMES)} or an import "
            "path 'package.module:factory'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"model {spec.name!r}: cannot import module {module_name!r} ({exc}). Make sure it is "
            "installed or on PYTHONPATH at every party."
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model {spec.name!r}: {module_name} has no callable {attr!r}")
    try:
        model = factory(input_shape=spec.input_shape, num_classes=spec.num_classes, **spec.options)
    except Exception as exc:  # user code may fail in any way
        raise ModelError(
            f"model {spec.name!r}: the factory failed with {type(exc).__name__}: {exc}. It is "
            "called as factory(input_shape=..., num_classes=..., **model.options)."
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {spec.name!r}: the factory returned {type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


def build_model(spec: ModelSpec, *, seed: int) -> nn.Module:
    """Build the model with weights initialised from ``seed`` (same seed, same weights)."""
    if spec.num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, the data has {spec.num_classes}")
    in_features = math.prod(spec.input_shape)
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.name == "logreg":
            model: nn.Module = _mlp(in_features, (), spec.num_classes)
        elif spec.name == "mlp":
            model = _mlp(in_features, spec.hidden, spec.num_classes)
        elif spec.name == "cnn":
            model = _cnn(spec.input_shape, spec.num_classes)
        else:
            model = _from_import_path(spec)
    _check_forward(model, spec)
    return model


def _check_forward(model: nn.Module, spec: ModelSpec) -> None:
    probe = torch.zeros((2, *spec.input_shape))
    try:
        with torch.no_grad():
            out = model.eval()(probe)
    except Exception as exc:  # a user model may fail in any way on the wrong shape
        raise ModelError(
            f"model {spec.name!r} fails on input of shape {tuple(spec.input_shape)}: {exc}"
        ) from None
    if tuple(out.shape) != (2, spec.num_classes):
        raise ModelError(
            f"model {spec.name!r} returns shape {tuple(out.shape)[1:]} per example; expected "
            f"{spec.num_classes} logits (one per class)"
        )
