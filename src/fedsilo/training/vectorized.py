"""Many parties' local training as one batched computation (simulation only).

When many simulated parties train the same small model (``logreg``, ``mlp``: linear layers
and ReLUs) with the same training config, one round of :func:`~fedsilo.training.local.train_local`
per party is mostly Python overhead. :func:`train_together` stacks the parties' parameters
(``(K, out, in)`` per layer) and runs every party's mini-batch step at once with batched
matrix products (``torch.baddbmm``), so the cost is that of one model on ``K`` times the batch.

Each party keeps what one-by-one training gives it: its own rows, its own shuffling (the same
``torch.randperm`` stream from its own seed, so it sees the same batches in the same order),
its own optimizer state (SGD momentum buffers, Adam moments and step counts), its own number
of steps (a party with fewer rows stops early: its parameters and state are frozen once its
batches are done), and its own FedProx anchor. A short last batch is padded with masked rows
that add nothing to the loss. The arithmetic differs from one-by-one training only in the
order of floating-point sums inside the matrix products, so the trained parameters agree with
:func:`train_local` to float32 rounding (``tests/training/test_vectorized.py`` checks
``rtol=1e-4, atol=1e-5`` after several epochs), not bit for bit.

The optimizer is the one :func:`train_local` uses (:class:`~fedsilo.training.optim.Optimizer`:
torch.optim's SGD and Adam rules) on the stacked tensors, one state per party. Record-level
DP (DP-SGD, per-example clipping) is not vectorized: such parties train one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsilo.training.local import LocalTrainConfig, TrainResult
from fedsilo.training.optim import Optimizer


@dataclass(frozen=True)
class PartyBatch:
    """One party's share of a vectorized training run: its model (its starting parameters,
    not modified), rows and shuffling seed."""

    model: nn.Module
    features: np.ndarray
    labels: np.ndarray
    seed: int


def linear_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The model's linear layers if it is a plain stack (Flatten?, Linear, ReLU, ..., Linear)
    that :func:`train_together` can run, else ``None``."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[nn.Linear] = []
    expect_linear = True
    for i, module in enumerate(model):
        if isinstance(module, nn.Flatten) and i == 0:
            continue
        if expect_linear and isinstance(module, nn.Linear) and module.bias is not None:
            layers.append(module)
            expect_linear = False
        elif not expect_linear and isinstance(module, nn.ReLU):
            expect_linear = True
        else:
            return None
    return layers if layers and not expect_linear else None


def signature(model: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """Models with equal signatures can train together; ``None``: not vectorizable."""
    layers = linear_layers(model)
    if layers is None:
        return None
    return tuple((layer.out_features, layer.in_features) for layer in layers)


CHUNK_BYTES = 4 << 20


def chunks(parties: Sequence[PartyBatch]) -> list[Sequence[PartyBatch]]:
    """``parties`` cut into consecutive runs to train together, sized so that a run's largest
    stacked layer stays under :data:`CHUNK_BYTES`: its buffers then come from the allocator's
    reused heap instead of fresh pages, whose faults cost more than the arithmetic (10 MLPs
    784-128-10 a chunk). The cut depends on the architecture alone, and a party's training
    does not depend on who trains with it."""
    sig = signature(parties[0].model) if parties else None
    largest = max((out * (inp + 1) for out, inp in sig), default=1) * 4 if sig else 1
    size = max(1, CHUNK_BYTES // largest)
    return [parties[i : i + size] for i in range(0, len(parties), size)]


def _schedule(n: int, cfg: LocalTrainConfig, seed: int) -> torch.Tensor:
    """Row indices of every step, ``(steps, batch_size)``, -1 where a short batch is padded:
    the batches :func:`train_local` draws from the same seed, in the same order."""
    generator = torch.Generator().manual_seed(seed)
    batch = cfg.batch_size
    per_epoch = -(-n // batch)
    steps = torch.full((cfg.epochs * per_epoch, batch), -1, dtype=torch.int64)
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)
        for j in range(per_epoch):
            chunk = order[j * batch : (j + 1) * batch]
            steps[epoch * per_epoch + j, : len(chunk)] = chunk
    return steps


def _state_names(model: nn.Module, layers: list[nn.Linear]) -> list[tuple[str, int, int]]:
    """``(state_dict name, layer, 0 weight / 1 bias)`` in the model's state_dict order."""
    where: dict[int, tuple[int, int]] = {}
    for i, layer in enumerate(layers):
        where[id(layer.weight)], where[id(layer.bias)] = (i, 0), (i, 1)
    out = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in where:
            raise ValueError(f"train_together: state entry {name!r} is not a linear layer's")
        out.append((name, *where[id(tensor)]))
    return out


def train_together(parties: Sequence[PartyBatch], cfg: LocalTrainConfig) -> list[TrainResult]:
    """Train every party's model as :func:`train_local` would one by one.

    All models must have the same :func:`signature` (not ``None``). The models are left as
    they were: each result's ``params`` holds the party's trained parameters (named as in its
    ``state_dict``), read-only views into one stacked buffer, no copy per party.
    """
    layers = [linear_layers(p.model) for p in parties]
    if any(ls is None for ls in layers) or len({signature(p.model) for p in parties}) != 1:
        raise ValueError("train_together needs models of one vectorizable architecture")
    k = len(parties)
    names = [_state_names(p.model, ls) for p, ls in zip(parties, layers, strict=True) if ls]
    with torch.no_grad():  # torch.stack copies: the models are not touched
        stacks = [
            [
                torch.stack([ls[i].weight for ls in layers if ls is not None]),
                torch.stack([ls[i].bias for ls in layers if ls is not None]),
            ]
            for i in range(len(layers[0] or []))
        ]
    params = [t.requires_grad_() for pair in stacks for t in pair]
    anchor = [t.detach().clone() for t in params] if cfg.proximal_mu > 0 else []

    # Every party's rows one after the other, plus one zero row that padding points at.
    sizes = [len(p.labels) for p in parties]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dim = stacks[0][0].shape[2]
    x_all = torch.zeros((int(offsets[-1]) + 1, dim), dtype=torch.float32)
    y_all = torch.zeros(int(offsets[-1]) + 1, dtype=torch.int64)
    schedules = []
    for j, p in enumerate(parties):
        rows = slice(int(offsets[j]), int(offsets[j + 1]))
        x_all[rows] = torch.from_numpy(
            np.ascontiguousarray(p.features, dtype=np.float32).reshape(sizes[j], -1)
        )
        y_all[rows] = torch.from_numpy(np.ascontiguousarray(p.labels, dtype=np.int64))
        schedules.append(_schedule(sizes[j], cfg, p.seed))
    party_steps = torch.tensor([len(s) for s in schedules])
    total_steps = int(party_steps.max())
    index = torch.full((k, total_steps, cfg.batch_size), -1, dtype=torch.int64)
    for j, s in enumerate(schedules):
        index[j, : len(s)] = torch.where(s >= 0, s + int(offsets[j]), -1)
    real = index >= 0
    # (steps, k, batch) rows of x_all; padding points at the zero row
    index = torch.where(real, index, int(offsets[-1])).transpose(0, 1).contiguous()

    state = Optimizer(params, cfg)
    loss_sums = torch.zeros(k, dtype=torch.float64)
    batch = torch.empty((k * cfg.batch_size, dim), dtype=torch.float32)  # reused every step
    for t in range(total_steps):
        active = party_steps > t
        idx, mask = index[t].reshape(-1), real[:, t].to(torch.float32)
        h = torch.index_select(x_all, 0, idx, out=batch).reshape(k, cfg.batch_size, dim)
        for i, (w, b) in enumerate(stacks):
            h = _StackedLinear.apply(h, w, b)
            if i + 1 < len(stacks):
                h = torch.relu(h)
        per_row = nn.functional.cross_entropy(
            h.reshape(-1, h.shape[-1]), y_all[idx], reduction="none"
        ).reshape(k, -1)
        count = mask.sum(dim=1).clamp(min=1.0)
        loss = (per_row * mask).sum(dim=1) / count
        if anchor:
            prox = sum(
                ((p - a) ** 2).reshape(k, -1).sum(dim=1)
                for p, a in zip(params, anchor, strict=True)
            )
            loss = loss + 0.5 * cfg.proximal_mu * prox
        grads = torch.autograd.grad(loss.sum(), params)
        state.step(grads, active)
        loss_sums += torch.where(active, loss.detach().double(), 0.0)

    arrays = [t.detach().numpy() for t in params]
    for a in arrays:
        a.flags.writeable = False
    return [
        TrainResult(
            num_examples=sizes[j],
            mean_loss=float(loss_sums[j]) / int(party_steps[j]),
            params={name: arrays[2 * i + kind][j] for name, i, kind in names[j]},
        )
        for j in range(k)
    ]


class _StackedLinear(torch.autograd.Function):
    """``x @ w^T + b`` for every party at once: ``x`` (K, batch, in), ``w`` (K, out, in),
    ``b`` (K, out). Autograd's own backward of ``baddbmm`` would give the weight gradient
    transposed (a strided view), which makes every optimizer update a strided pass; this one
    computes it in the weight's layout."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs[:2])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(dim=1)
