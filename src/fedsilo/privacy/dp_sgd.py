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

Randomness: row sampling and noise come from ``torch.Generator``s seeded by the coordinator's
per-round fit seed, so the same job seed gives bit-identical weights (reproducible
simulation). Opacus's ``secure_mode`` (a CSPRNG, robust to floating-point attacks) is off for
that reason; a production party that wants it can pass ``secure_mode=True``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from torch import nn

from fedsilo.errors import ModelError
from fedsilo.privacy.accounting import GaussianSpend
from fedsilo.runtime.seeds import derive_seed
from fedsilo.training.local import LocalTrainConfig, TrainResult, _optimizer


@dataclass(frozen=True)
class DPSGDConfig:
    """The DP-SGD mechanism a party runs every round."""

    noise_multiplier: float
    max_grad_norm: float
    secure_mode: bool = False


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
    errors = ModuleValidator.validate(model.train(), strict=False)
    if errors:
        reasons = "; ".join(sorted({str(e) for e in errors}))
        raise ModelError(
            f"the model cannot be trained with record-level DP: {reasons}. Replace BatchNorm "
            "with GroupNorm (opacus.validators.ModuleValidator.fix does this) or disable "
            "privacy.record_dp"
        )


def train_local_dp(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    cfg: LocalTrainConfig,
    dp: DPSGDConfig,
    *,
    seed: int,
) -> TrainResult:
    """DP-SGD on the party's rows; ``model`` is updated in place. Same seed, same weights."""
    check_model(model)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    n = int(x.shape[0])
    q = sample_rate(cfg.batch_size, n)
    expected_batch = max(1, round(q * n))
    sampling = torch.Generator().manual_seed(derive_seed(seed, "dp-sample"))
    noise = torch.Generator().manual_seed(derive_seed(seed, "dp-noise"))
    # Hooks go on a copy, so the party's model never carries Opacus state between rounds.
    worker = copy.deepcopy(model)
    gsm = GradSampleModule(worker)
    optimizer = DPOptimizer(
        _optimizer(gsm, cfg),
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=expected_batch,
        generator=None if dp.secure_mode else noise,
        secure_mode=dp.secure_mode,
    )
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=q, generator=sampling)
    loss_fn = nn.CrossEntropyLoss()
    gsm.train()
    total, batches = 0.0, 0
    for _ in range(cfg.epochs):
        for indices in sampler:
            optimizer.zero_grad(set_to_none=True)
            if not indices:
                _noise_only_step(optimizer, dp, expected_batch, noise)
                continue
            idx = torch.tensor(indices, dtype=torch.long)
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
    optimizer: DPOptimizer, dp: DPSGDConfig, expected_batch: int, generator: torch.Generator
) -> None:
    """An empty Poisson batch still releases noise (Opacus would skip the step silently)."""
    std = dp.noise_multiplier * dp.max_grad_norm
    for p in optimizer.params:
        g = torch.normal(0.0, std, p.shape, generator=generator) / expected_batch
        p.grad = g.to(p.dtype)
    optimizer.original_optimizer.step()
