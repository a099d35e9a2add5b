"""Record-level DP-SGD for one party's local training (Abadi et al. 2016, "Deep Learning with
Differential Privacy", Alg. 1).

Each step samples every row independently with probability ``sample_rate = batch_size / rows``
(Poisson sampling, Sec. 3.1 "lots"), clips each example's gradient to ``max_grad_norm``, sums,
adds Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` and divides by
the expected batch size. Per-example gradients come from Opacus's ``GradSampleModule`` and the
clipping and noise from its ``DPOptimizer``; privacy is accounted by
:mod:`fedsilo.privacy.accounting`, not by Opacus.

Threat model: protects any single row of the party's data against everyone who sees what the
party sends (coordinator, other parties, whoever receives the final model), with (epsilon,
delta) composed over every step of every round the party trained in.

Randomness: row sampling and noise come from the party's :class:`~fedsilo.privacy.noise.NoiseSource`
(AES-256-CTR keyed from ``os.urandom``, Gaussians hardened against floating-point attacks),
never from the coordinator's fit seed: whoever sent the task cannot regenerate the noise and
subtract it. Opacus's own ``secure_mode`` needs ``torchcsprng`` (not installable for current
torch) and without it falls back to torch's Mersenne Twister, so :class:`_CsprngDPOptimizer`
replaces Opacus's noise draw instead. A simulation that sets ``[privacy] reproducible_noise``
passes a :meth:`~fedsilo.privacy.noise.NoiseSource.reproducible` source: same seed, same bits.
"""

from __future__ import annotations

import copy
import functools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fedsilo.errors import ModelError
from fedsilo.privacy.accounting import GaussianSpend
from fedsilo.privacy.noise import NoiseSource
from fedsilo.training.local import LocalTrainConfig, TrainResult, torch_optimizer

if TYPE_CHECKING:
    from opacus.optimizers import DPOptimizer


@dataclass(frozen=True)
class DPSGDConfig:
    """The DP-SGD mechanism a party runs every round."""

    noise_multiplier: float
    max_grad_norm: float


@functools.cache
def _csprng_optimizer() -> Any:
    """Opacus's DP optimizer with its Gaussian noise drawn from a :class:`NoiseSource`.

    Built on first use: Opacus (and torch.distributed under it) costs about a second of import
    that a job without record-level DP never pays."""
    from opacus.optimizers import DPOptimizer

    class CsprngDPOptimizer(DPOptimizer):  # type: ignore[misc]
        def __init__(self, *args: object, noise: NoiseSource, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.noise_source = noise

        def add_noise(self) -> None:
            std = self.noise_multiplier * self.max_grad_norm
            for p in self.params:
                summed = p.summed_grad
                p.grad = (summed + self.noise_source.normal_like(std, summed)).view_as(p)

    return CsprngDPOptimizer


def sample_rate(batch_size: int, rows: int) -> float:
    """Poisson sampling probability of each row per step: ``batch_size / rows`` (at most 1)."""
    return min(1.0, batch_size / max(rows, 1))


def steps_per_round(batch_size: int, rows: int, epochs: int) -> int:
    """Optimizer steps per round: ``epochs * floor(1 / sample_rate)``, as Opacus samples."""
    return epochs * int(1 / sample_rate(batch_size, rows))


def round_spend(noise_multiplier: float, batch_size: int, rows: int, epochs: int) -> GaussianSpend:
    """The privacy event of one round of DP-SGD at a party with ``rows`` training rows."""
    return GaussianSpend(
        noise_multiplier, sample_rate(batch_size, rows), steps_per_round(batch_size, rows, epochs)
    )


def check_model(model: nn.Module) -> None:
    """Raise :class:`ModelError` if Opacus cannot compute per-example gradients for ``model``."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model.train(), strict=False)
    if errors:
        reasons = "; ".join(sorted({str(e) for e in errors}))
        raise ModelError(
            f"the model cannot be trained with record-level DP: {reasons}. Replace BatchNorm "
            "with GroupNorm (opacus.validators.ModuleValidator.fix does this) or disable "
            "privacy.record_dp"
        )


def poisson_batches(rows: int, q: float, noise: NoiseSource) -> list[torch.Tensor]:
    """One epoch of Poisson-sampled lots: ``floor(1/q)`` index sets, each row kept w.p. ``q``."""
    return [torch.from_numpy(np.flatnonzero(noise.bernoulli(q, rows))) for _ in range(int(1 / q))]


def train_local_dp(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    cfg: LocalTrainConfig,
    dp: DPSGDConfig,
    *,
    noise: NoiseSource,
) -> TrainResult:
    """DP-SGD on the party's rows; ``model`` is updated in place. Sampling and noise: ``noise``."""
    from opacus import GradSampleModule

    check_model(model)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    n = int(x.shape[0])
    q = sample_rate(cfg.batch_size, n)
    expected_batch = max(1, round(q * n))
    # Hooks go on a copy, so the party's model never carries Opacus state between rounds.
    worker = copy.deepcopy(model)
    gsm = GradSampleModule(worker)
    optimizer = _csprng_optimizer()(
        torch_optimizer(gsm, cfg),
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=expected_batch,
        noise=noise,
    )
    loss_fn = nn.CrossEntropyLoss()
    gsm.train()
    total, batches = 0.0, 0
    for _ in range(cfg.epochs):
        for idx in poisson_batches(n, q, noise):
            optimizer.zero_grad(set_to_none=True)
            if idx.numel() == 0:
                _noise_only_step(optimizer, dp, expected_batch, noise)
                continue
            loss = loss_fn(gsm(x[idx]), y[idx])
            with warnings.catch_warnings():  # Opacus's hooks on a first layer without input grad
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
    gsm._close()
    model.load_state_dict(worker.state_dict())
    return TrainResult(num_examples=n, mean_loss=total / max(batches, 1))


def _noise_only_step(
    optimizer: DPOptimizer, dp: DPSGDConfig, expected_batch: int, noise: NoiseSource
) -> None:
    """An empty Poisson batch still releases noise (Opacus would skip the step silently)."""
    std = dp.noise_multiplier * dp.max_grad_norm
    for p in optimizer.params:
        p.grad = noise.normal_like(std, p) / expected_batch
    optimizer.original_optimizer.step()
