"""One party's local training for one round (McMahan et al. 2017, ClientUpdate in Alg. 1).

Mini-batch SGD or Adam over the party's rows for ``epochs`` passes. With ``proximal_mu > 0``
the FedProx proximal term ``mu/2 * ||w - w_global||^2`` is added to every batch loss
(Li et al. 2020, "Federated Optimization in Heterogeneous Networks", Eq. 2).

Shuffling uses a ``torch.Generator`` seeded by the coordinator for this party and round, so
the same job and seed give bit-identical weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedsilo.training.optim import Optimizer


@dataclass(frozen=True)
class LocalTrainConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    num_examples: int
    mean_loss: float
    # The trained parameters when the trainer hands them over as arrays (vectorized
    # training: views into its stacked result); None: the model was trained in place.
    params: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)


class Trainer(Protocol):
    """How a party runs its local training: :func:`train_local`, or in a simulation a trainer
    that trains many parties together (``fedsilo.runtime.batched.BatchedTrainer``), which
    returns the trained parameters in :attr:`TrainResult.params` instead of writing them
    into ``model``."""

    def __call__(
        self,
        model: nn.Module,
        features: np.ndarray,
        labels: np.ndarray,
        cfg: LocalTrainConfig,
        *,
        seed: int,
    ) -> TrainResult: ...


def torch_optimizer(model: nn.Module, cfg: LocalTrainConfig) -> torch.optim.Optimizer:
    """The torch optimizer :class:`~fedsilo.training.optim.Optimizer` equals, for DP-SGD
    (Opacus wraps a torch optimizer)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def train_local(
    model: nn.Module, features: np.ndarray, labels: np.ndarray, cfg: LocalTrainConfig, *, seed: int
) -> TrainResult:
    """Train ``model`` in place on the party's rows; returns examples seen and mean loss."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    n = int(x.shape[0])
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if cfg.proximal_mu > 0 else []
    optimizer = Optimizer(params, cfg)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, batches = 0.0, 0
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            if anchor:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                loss = loss + 0.5 * cfg.proximal_mu * prox
            optimizer.step(torch.autograd.grad(loss, params, allow_unused=True))
            total += float(loss.detach())
            batches += 1
    return TrainResult(num_examples=n, mean_loss=total / max(batches, 1))


def predict_proba(model: nn.Module, features: np.ndarray, *, batch_size: int = 2048) -> np.ndarray:
    """Class probabilities, float64 (n, num_classes)."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            xb = torch.from_numpy(
                np.ascontiguousarray(features[start : start + batch_size], dtype=np.float32)
            )
            out.append(torch.softmax(model(xb), dim=1).double().numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out)
