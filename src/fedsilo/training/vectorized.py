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

Optimizers are re-implemented on stacked tensors with torch's update rules (``torch.optim.SGD``
with momentum and weight decay, dampening 0, no Nesterov; ``torch.optim.Adam`` with betas
(0.9, 0.999), eps 1e-8, L2 weight decay). Record-level DP (DP-SGD, per-example clipping) is
not vectorized: such parties train one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsilo.training.local import LocalTrainConfig, TrainResult

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class PartyBatch:
    """One party's share of a vectorized training run: its model (trained in place), rows
    and shuffling seed."""

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


def train_together(parties: Sequence[PartyBatch], cfg: LocalTrainConfig) -> list[TrainResult]:
    """Train every party's model in place, as :func:`train_local` would one by one.

    All models must have the same :func:`signature` (not ``None``).
    """
    layers = [linear_layers(p.model) for p in parties]
    if any(ls is None for ls in layers) or len({signature(p.model) for p in parties}) != 1:
        raise ValueError("train_together needs models of one vectorizable architecture")
    k = len(parties)
    stacks = [
        [
            torch.stack([ls[i].weight.detach() for ls in layers if ls is not None]).clone(),
            torch.stack([ls[i].bias.detach() for ls in layers if ls is not None]).clone(),
        ]
        for i in range(len(layers[0] or []))
    ]
    params = [t.requires_grad_() for pair in stacks for t in pair]
    anchor = [t.detach().clone() for t in params] if cfg.proximal_mu > 0 else []

    # Every party's rows padded to the longest, plus one zero row that padding points at.
    sizes = [len(p.labels) for p in parties]
    width = max(sizes) + 1
    dim = stacks[0][0].shape[2]
    x_all = torch.zeros((k, width, dim), dtype=torch.float32)
    y_all = torch.zeros((k, width), dtype=torch.int64)
    schedules = []
    for j, p in enumerate(parties):
        x = np.ascontiguousarray(p.features, dtype=np.float32).reshape(sizes[j], -1)
        x_all[j, : sizes[j]] = torch.from_numpy(x)
        y_all[j, : sizes[j]] = torch.from_numpy(np.ascontiguousarray(p.labels, dtype=np.int64))
        schedules.append(_schedule(sizes[j], cfg, p.seed))
    party_steps = torch.tensor([len(s) for s in schedules])
    total_steps = int(party_steps.max())
    index = torch.full((k, total_steps, cfg.batch_size), -1, dtype=torch.int64)
    for j, s in enumerate(schedules):
        index[j, : len(s)] = s
    real = index >= 0
    index = torch.where(real, index, torch.tensor(width - 1))
    rows = torch.arange(k)[:, None]

    state = _OptimizerState(params, cfg)
    loss_sums = torch.zeros(k, dtype=torch.float64)
    for t in range(total_steps):
        active = party_steps > t
        idx, mask = index[:, t], real[:, t].to(torch.float32)
        h = x_all[rows, idx]
        for i, (w, b) in enumerate(stacks):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i + 1 < len(stacks):
                h = torch.relu(h)
        per_row = nn.functional.cross_entropy(
            h.reshape(-1, h.shape[-1]), y_all[rows, idx].reshape(-1), reduction="none"
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

    for j, ls in enumerate(layers):
        assert ls is not None
        with torch.no_grad():
            for layer, (w, b) in zip(ls, stacks, strict=True):
                layer.weight.copy_(w[j])
                layer.bias.copy_(b[j])
    return [
        TrainResult(num_examples=sizes[j], mean_loss=float(loss_sums[j]) / int(party_steps[j]))
        for j in range(k)
    ]


class _OptimizerState:
    """torch.optim.SGD / Adam's update rules on stacked parameters, one state per party;
    a party whose steps are done (``active`` False) keeps its parameters and state."""

    def __init__(self, params: list[torch.Tensor], cfg: LocalTrainConfig) -> None:
        self.params = params
        self.cfg = cfg
        self.steps = 0
        # moments only where the rule has them (SGD momentum buffer, Adam's two moments)
        stateful = cfg.optimizer == "adam" or cfg.momentum > 0
        self.first = [torch.zeros_like(p) for p in params] if stateful else []
        self.second = [torch.zeros_like(p) for p in params] if cfg.optimizer == "adam" else []

    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor) -> None:
        cfg = self.cfg
        self.steps += 1
        everyone = bool(active.all())  # no party done yet: no masking needed
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
                on = active.reshape(-1, *([1] * (p.dim() - 1)))
                if cfg.weight_decay:
                    g = g.add(p, alpha=cfg.weight_decay)
                step = self._adam if cfg.optimizer == "adam" else self._sgd
                update = step(i, g, on)
                p.sub_(update if everyone else torch.where(on, update, 0.0))

    def _sgd(self, i: int, g: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.momentum:
            # the first step's buffer is the gradient itself (torch.optim.SGD)
            buf = g.clone() if self.steps == 1 else self.first[i].mul(cfg.momentum).add_(g)
            self.first[i] = torch.where(on, buf, self.first[i])
            g = buf
        return g * cfg.learning_rate

    def _adam(self, i: int, g: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
        beta1, beta2 = ADAM_BETAS
        # parties stop in order of their step counts, so an active party is at step `steps`
        m = self.first[i].lerp(g, 1 - beta1)
        v = self.second[i].mul(beta2).addcmul_(g, g.conj(), value=1 - beta2)
        self.first[i] = torch.where(on, m, self.first[i])
        self.second[i] = torch.where(on, v, self.second[i])
        bias1 = 1 - beta1**self.steps
        bias2 = 1 - beta2**self.steps
        denom = (v.sqrt() / (bias2**0.5)).add_(ADAM_EPS)
        return (self.cfg.learning_rate / bias1) * (m / denom)
