"""DP-SGD local training: works with the model zoo, clips and adds noise from a CSPRNG.

Bit-for-bit determinism holds only with the simulation switch (a reproducible NoiseSource,
what ``[privacy] reproducible_noise`` gives a party); the default source is the CSPRNG.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedsilo.errors import ModelError
from fedsilo.models import ModelSpec, build_model, get_params
from fedsilo.privacy.dp_sgd import DPSGDConfig, round_spend, steps_per_round, train_local_dp
from fedsilo.privacy.noise import NoiseSource
from fedsilo.training import LocalTrainConfig


def _data(n: int, shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 2, n)


def _train(spec: ModelSpec, seed: int | None, noise: float = 1.0) -> dict[str, np.ndarray]:
    """``seed`` set: the simulation switch (reproducible noise); ``None``: the CSPRNG."""
    x, y = _data(64, spec.input_shape)
    model = build_model(spec, seed=0)
    cfg = LocalTrainConfig(epochs=2, batch_size=16, learning_rate=0.1)
    source = NoiseSource.for_mechanism(seed, "dp-sgd")
    train_local_dp(model, x, y, cfg, DPSGDConfig(noise, 1.0), noise=source)
    return get_params(model)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("logreg", (5,), 2),
        ModelSpec("mlp", (5,), 2, (8,)),
        ModelSpec("cnn", (1, 8, 8), 2),
    ],
    ids=["logreg", "mlp", "cnn"],
)
def test_zoo_models_train_and_same_seed_gives_same_bits(spec: ModelSpec) -> None:
    # Determinism with the simulation switch on (reproducible noise seeded by 7 and 8).
    first, again, other = _train(spec, 7), _train(spec, 7), _train(spec, 8)
    start = get_params(build_model(spec, seed=0))
    for name in first:
        assert np.array_equal(first[name], again[name])
        assert not np.array_equal(first[name], start[name])  # it trained
    assert any(not np.array_equal(first[n], other[n]) for n in first)  # seed matters
    # Without the switch (the default CSPRNG) two runs never agree.
    secure_a, secure_b = _train(spec, None), _train(spec, None)
    assert all(not np.array_equal(secure_a[n], secure_b[n]) for n in secure_a)


def test_noise_scale_shows_in_the_update() -> None:
    spec = ModelSpec("logreg", (5,), 2)
    start = get_params(build_model(spec, seed=0))

    def moved(noise: float) -> float:
        p = _train(spec, 1, noise)
        return float(sum(np.abs(p[k] - start[k]).sum() for k in p))

    assert moved(50.0) > 10 * moved(0.01)


def test_clipping_bounds_a_noiseless_step() -> None:
    # One epoch, SGD lr 1, no noise to speak of: each step moves the weights by at most
    # (clipped per-example gradients summed) / expected batch <= C * batch / expected batch.
    x, y = _data(40, (3,))
    x *= 1000.0  # huge gradients, all clipped
    model = build_model(ModelSpec("logreg", (3,), 2), seed=0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = LocalTrainConfig(epochs=1, batch_size=40, learning_rate=1.0)  # q = 1: one full step
    train_local_dp(model, x, y, cfg, DPSGDConfig(1e-6, 0.5), noise=NoiseSource.secure())
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).norm()) <= 0.5 + 1e-3


def test_batchnorm_model_is_refused_with_a_fix() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    x, y = _data(20, (3,))
    with pytest.raises(ModelError, match="GroupNorm"):
        train_local_dp(
            model, x, y, LocalTrainConfig(), DPSGDConfig(1.0, 1.0), noise=NoiseSource.secure()
        )


def test_round_spend_follows_opacus_sampling() -> None:
    assert steps_per_round(batch_size=32, rows=121, epochs=2) == 2 * int(121 / 32)
    spend = round_spend(1.1, 32, 121, 2)
    assert spend.sample_rate == pytest.approx(32 / 121)
    assert spend.steps == 6
    assert round_spend(1.0, 500, 100, 1).sample_rate == 1.0
