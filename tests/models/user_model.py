"""User model factories for the import-path tests."""

from __future__ import annotations

from torch import nn


def make(input_shape: tuple[int, ...], num_classes: int, width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(input_shape[0], width), nn.Tanh(), nn.Linear(width, num_classes))


def make_wrong(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Linear(input_shape[0], num_classes + 1)


def make_broken(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    raise RuntimeError("weights file missing")
