"""Local training without torch.optim gives torch.optim's parameters bit for bit."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fedsilo.models import ModelSpec, build_model, get_params
from fedsilo.training import LocalTrainConfig, train_local
from fedsilo.training.local import torch_optimizer


def _with_torch_optim(
    model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: LocalTrainConfig, seed: int
) -> None:
    """train_local as it was written with torch.optim (zero_grad, backward, step)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    anchor = [p.detach().clone() for p in model.parameters()] if cfg.proximal_mu > 0 else []
    optimizer = torch_optimizer(model, cfg)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            if anchor:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + 0.5 * cfg.proximal_mu * prox
            loss.backward()
            optimizer.step()


@pytest.mark.parametrize(
    "cfg",
    [
        LocalTrainConfig(epochs=2, batch_size=8, learning_rate=0.1),
        LocalTrainConfig(epochs=2, batch_size=8, learning_rate=0.05, momentum=0.9),
        LocalTrainConfig(
            epochs=2, batch_size=8, learning_rate=0.05, momentum=0.5, weight_decay=1e-2
        ),
        LocalTrainConfig(epochs=3, batch_size=16, learning_rate=0.01, optimizer="adam"),
        LocalTrainConfig(
            epochs=2, batch_size=8, learning_rate=0.01, optimizer="adam", weight_decay=1e-2
        ),
        LocalTrainConfig(epochs=2, batch_size=8, learning_rate=0.05, proximal_mu=0.5),
    ],
)
def test_train_local_equals_torch_optim_bit_for_bit(cfg: LocalTrainConfig) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(45, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=45)
    model = build_model(ModelSpec("mlp", (6,), 3, hidden=(7, 5)), seed=1)
    ours, reference = copy.deepcopy(model), copy.deepcopy(model)
    train_local(ours, x, y, cfg, seed=11)
    _with_torch_optim(reference, x, y, cfg, seed=11)
    want, start = get_params(reference), get_params(model)
    assert all(not np.array_equal(want[k], start[k]) for k in start)  # it trained
    for key, value in get_params(ours).items():
        assert np.array_equal(value, want[key]), key


def test_a_frozen_layer_stays_as_it_was() -> None:
    model = build_model(ModelSpec("mlp", (4,), 2, hidden=(3,)), seed=0)
    first = model[1]  # Flatten, Linear, ReLU, Linear
    assert isinstance(first, nn.Linear)
    first.weight.requires_grad_(False)
    before = first.weight.detach().clone()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)).astype(np.float32), rng.integers(0, 2, 10)
    train_local(model, x, y, LocalTrainConfig(batch_size=4, optimizer="adam"), seed=0)
    assert torch.equal(first.weight, before)
    assert not torch.equal(
        model[3].weight, build_model(ModelSpec("mlp", (4,), 2, hidden=(3,)), seed=0)[3].weight
    )


def test_one_by_one_training_does_not_import_torch_dynamo() -> None:
    # building a torch optimizer imports torch._dynamo: ~1.1 s of every such process
    code = (
        "import sys, numpy as np\n"
        "from fedsilo.models import ModelSpec, build_model\n"
        "from fedsilo.training import LocalTrainConfig, train_local\n"
        "m = build_model(ModelSpec('mlp', (4,), 2, hidden=(3,)), seed=0)\n"
        "x = np.zeros((8, 4), np.float32); y = np.array([0, 1] * 4)\n"
        "for o in ('sgd', 'adam'):\n"
        "    train_local(m, x, y, LocalTrainConfig(batch_size=4, optimizer=o), seed=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
