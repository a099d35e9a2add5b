"""Client-level DP-FedAvg with fixed or adaptive clipping.

McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models" (Alg. 1,
fixed-denominator estimator): each selected party clips its update to L2 norm ``C``; the
coordinator releases ``(sum of clipped updates + N(0, (z C)^2)) / m`` with ``m`` the number
of parties selected for the round. Andrew et al. 2021, "Differentially Private Learning with
Adaptive Clipping" (Alg. 1, Thm. 1): every party also reports the bit ``||update|| <= C``; the
noisy mean ``b`` of the bits moves the clip norm geometrically, ``C <- C exp(-eta (b - gamma))``,
toward the ``gamma`` quantile of update norms. The bit sum gets noise ``sigma_b`` and the
update sum noise multiplier ``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``, so the pair together
is a Gaussian mechanism with noise multiplier ``z`` (what the accountant is given).

Noise placement (``client_dp.noise``): ``coordinator`` – a trusted coordinator adds the noise
to the sum, from a generator seeded by the job (reproducible); ``distributed`` – each party
adds ``N(0, (z_delta C)^2 / m)`` (and ``N(0, sigma_b^2 / m)`` to its bit) before secure
aggregation, from OS entropy (a seed the coordinator could derive would let it subtract the
noise). If parties drop, the sum carries only ``survivors / m`` of the noise variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.config import ClientDPConfig, ClientDPNoise
from fedsilo.errors import ConfigError
from fedsilo.privacy.accounting import GaussianSpend, epsilon


def clip_update(update: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """``update`` scaled to L2 norm <= ``clip_norm``, and 1.0 if it was already within."""
    norm = float(np.linalg.norm(update))
    if norm <= clip_norm:
        return update, 1.0
    return update * (clip_norm / norm), 0.0


@dataclass
class ClientDP:
    """The coordinator's DP-FedAvg state: current clip norm and the spend so far."""

    config: ClientDPConfig
    delta: float
    sample_rate: float
    clip_norm: float = 0.0
    rounds: int = 0

    def __post_init__(self) -> None:
        self.clip_norm = self.config.clip_norm

    def bit_stddev(self, m: int) -> float:
        if self.config.clipped_count_stddev is not None:
            return self.config.clipped_count_stddev
        return max(m / 20, self.config.noise_multiplier)

    def update_noise_multiplier(self, m: int) -> float:
        z = self.config.noise_multiplier
        if not self.config.adaptive_clipping:
            return z
        two_sigma_b = 2 * self.bit_stddev(m)
        if two_sigma_b <= z:
            raise ConfigError(
                f"client_dp.clipped_count_stddev {two_sigma_b / 2:g} is too small for noise "
                f"multiplier {z:g}: adaptive clipping needs it above z / 2"
            )
        return 1 / math.sqrt(z**-2 - two_sigma_b**-2)

    def party_task(self, m: int) -> dict[str, float]:
        """What each party needs: the clip norm and, for distributed noise, its noise share."""
        distributed = self.config.noise is ClientDPNoise.DISTRIBUTED
        std = self.update_noise_multiplier(m) * self.clip_norm / math.sqrt(m)
        bit_std = self.bit_stddev(m) / math.sqrt(m) if self.config.adaptive_clipping else 0.0
        return {
            "clip_norm": self.clip_norm,
            "noise_std": std if distributed else 0.0,
            "bit_noise_std": bit_std if distributed else 0.0,
        }

    def finish(
        self, update_sum: np.ndarray, bit_sum: float, m: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The released mean update; adapts the clip norm for the next round."""
        if self.config.noise is ClientDPNoise.COORDINATOR:
            std = self.update_noise_multiplier(m) * self.clip_norm
            update_sum = update_sum + rng.normal(0.0, std, update_sum.shape)
            if self.config.adaptive_clipping:
                bit_sum += float(rng.normal(0.0, self.bit_stddev(m)))
        mean = update_sum / m
        if self.config.adaptive_clipping:
            unclipped = bit_sum / m
            step = -self.config.clip_learning_rate * (unclipped - self.config.target_quantile)
            self.clip_norm *= math.exp(step)
        self.rounds += 1
        return mean

    def restore(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Continue after ``len(history)`` completed rounds (their ``privacy`` records)."""
        self.rounds = len(history)
        if history:
            self.clip_norm = float(history[-1].get("next_clip_norm", self.clip_norm))

    def record(self, clip_norm_used: float) -> dict[str, Any]:
        """The cumulative spend after this round, for ``RoundRecord.privacy``."""
        spend = GaussianSpend(self.config.noise_multiplier, self.sample_rate, self.rounds)
        return {
            "level": "client",
            "epsilon": epsilon(spend, self.delta),
            "delta": self.delta,
            "noise_multiplier": self.config.noise_multiplier,
            "clip_norm": clip_norm_used,
            "next_clip_norm": self.clip_norm,  # what a resumed job continues from
            "noise": self.config.noise.value,
            "sample_rate": self.sample_rate,
        }
