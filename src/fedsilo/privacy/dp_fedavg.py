"""Client-level DP-FedAvg with fixed or adaptive clipping.

McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models" (Alg. 1,
fixed-denominator estimator): each selected party clips its update to L2 norm ``C``; the
coordinator releases ``(sum of clipped updates + N(0, (z C)^2)) / m`` with ``m`` the number
of parties selected for the round. Andrew et al. 2021, "Differentially Private Learning with
Adaptive Clipping" (Alg. 1, Thm. 1): every party also reports whether ``||update|| <= C``,
centred as ``b - 1/2`` (so one party moves the bit sum by at most 1/2, the sensitivity the
theorem assumes); the noisy mean of the bits (plus 1/2) moves the clip norm geometrically,
``C <- C exp(-eta (b - gamma))``, toward the ``gamma`` quantile of update norms. The bit sum
gets noise ``sigma_b`` and the update sum noise multiplier
``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``, so the pair together is a Gaussian mechanism
with noise multiplier ``z``.

Noise (``client_dp.noise``): ``coordinator`` -- a trusted coordinator adds the noise to the
sum; ``distributed`` -- each party adds ``N(0, (z_delta C)^2 / m)`` (and ``N(0, sigma_b^2 /
m)`` to its bit) before secure aggregation. Either way the noise comes from a
:class:`~fedsilo.privacy.noise.NoiseSource` where it is added (a CSPRNG; seeded only in a
simulation with ``[privacy] reproducible_noise``).

Accounting (:meth:`ClientDP.record`) follows the mechanism as run: each release's noise
multiplier is computed from the noise actually in the sum (with distributed noise, only the
``s`` parties that contributed: ``z_delta sqrt(s / m)``) and both sensitivities; the
selection of ``k`` of ``N`` parties is a fixed-size sample without replacement
(:class:`~fedsilo.privacy.accounting.FixedSizeGaussianSpend`, replace-one relation: the
sensitivities double), or with ``k = N`` a plain Gaussian (add/remove relation).

Party side (:class:`ClientDPPolicy`): the clip norm and noise shares reach a party in the
coordinator's FIT task, so each party checks them against its own policy before it trains:
a clip norm above its ``max_clip_norm``, a noise share that would give the sum a noise
multiplier below its ``min_noise_multiplier``, or (unless it trusts the coordinator with the
noise) no noise share at all is refused with :class:`~fedsilo.errors.RefusedError`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from fedsilo.config_base import Strict
from fedsilo.errors import ConfigError, RefusedError
from fedsilo.privacy.accounting import (
    AccountingMethod,
    FixedSizeGaussianSpend,
    GaussianSpend,
    Spend,
    epsilon,
)
from fedsilo.privacy.noise import NoiseSource

BIT_SENSITIVITY = 0.5  # one party moves the sum of centred bits b - 1/2 by at most 1/2
ACCOUNTING = AccountingMethod.RDP  # the coordinator's accountant for client-level spend


class ClientDPNoise(enum.Enum):
    COORDINATOR = "coordinator"  # a trusted coordinator adds N(0, (zC)^2) to the sum
    DISTRIBUTED = "distributed"  # each party adds N(0, (zC)^2 / m) before secure aggregation


class ClientDPParams(Protocol):
    """The mechanism's parameters (``[privacy.client_dp]`` of a job is one)."""

    @property
    def noise_multiplier(self) -> float: ...
    @property
    def clip_norm(self) -> float: ...
    @property
    def noise(self) -> ClientDPNoise: ...
    @property
    def adaptive_clipping(self) -> bool: ...
    @property
    def target_quantile(self) -> float: ...
    @property
    def clip_learning_rate(self) -> float: ...
    @property
    def clipped_count_stddev(self) -> float | None: ...


class ClientDPPolicy(Strict):
    """What a party accepts in client-DP rounds: its own config, never the coordinator's.

    ``[privacy.client_dp]`` of its ``party.toml``; in a simulation the job's
    ``[privacy.client_dp]`` stands in (:meth:`of_job`). ``min_noise_multiplier`` is the least
    noise multiplier of the noisy sum the party's own noise share must give (with ``m``
    parties adding equal shares: ``noise_std * sqrt(m) / clip_norm``, the clipped-count bit's
    noise included as Andrew et al. combine them); ``trust_coordinator_noise`` lets the
    coordinator add all of the noise (``client_dp.noise = "coordinator"``), where the party
    adds none and cannot see that any is added.
    """

    min_noise_multiplier: float = Field(default=1.0, gt=0)
    max_clip_norm: float | None = Field(default=None, gt=0)
    trust_coordinator_noise: bool = False

    @classmethod
    def of_job(cls, config: ClientDPParams) -> ClientDPPolicy:
        """A simulated party's policy: exactly the job's mechanism (an adaptive clip norm
        moves, so it has no cap; its noise moves with it)."""
        return cls(
            min_noise_multiplier=config.noise_multiplier,
            max_clip_norm=None if config.adaptive_clipping else config.clip_norm,
            trust_coordinator_noise=config.noise is ClientDPNoise.COORDINATOR,
        )

    def check(
        self,
        *,
        clip_norm: float,
        noise_std: float,
        bit_noise_std: float,
        parties: int | None,
        where: str,
    ) -> None:
        """Refuse a task outside this policy; ``parties``: the secure-aggregation round's size
        (None without secure aggregation). ``where`` names the party and round."""
        field = "field 'private.client_dp"

        def refuse(why: str) -> RefusedError:
            return RefusedError(f"{where} refuses the client-DP task: {why}")

        if self.max_clip_norm is not None and clip_norm > self.max_clip_norm:
            raise refuse(
                f"{field}.clip_norm' is {clip_norm:g}, above its max_clip_norm "
                f"{self.max_clip_norm:g} ([privacy.client_dp] of its own config)"
            )
        if noise_std == 0 and bit_noise_std == 0:
            if not self.trust_coordinator_noise:
                raise refuse(
                    f"{field}.noise_std' is 0: the coordinator would add all of the noise, "
                    "which this party cannot check (its trust_coordinator_noise is false). "
                    'Run the job with client_dp.noise = "distributed"'
                )
            return
        if parties is None:
            raise refuse(
                "a noise share without secure aggregation: the coordinator would see its "
                "update with only its own share of the noise"
            )
        z_update = noise_std * math.sqrt(parties) / clip_norm
        precision = z_update**-2 if z_update > 0 else math.inf
        if bit_noise_std > 0:
            precision += (bit_noise_std * math.sqrt(parties) / BIT_SENSITIVITY) ** -2
        z = 1 / math.sqrt(precision)
        if z < self.min_noise_multiplier * (1 - 1e-9):  # the coordinator's float rounding
            raise refuse(
                f"{field}.noise_std' is {noise_std:.6g} (bit_noise_std {bit_noise_std:.6g}): "
                f"with clip_norm {clip_norm:g} over {parties} parties the sum gets noise "
                f"multiplier {z:.4g}, below its min_noise_multiplier "
                f"{self.min_noise_multiplier:g}"
            )


def clip_update(update: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """``update`` scaled to L2 norm <= ``clip_norm``, and the centred bit: +1/2 if it was
    already within, -1/2 if it was clipped."""
    norm = float(np.linalg.norm(update))
    if norm <= clip_norm:
        return update, BIT_SENSITIVITY
    return update * (clip_norm / norm), -BIT_SENSITIVITY


@dataclass
class ClientDP:
    """The coordinator's DP-FedAvg state: current clip norm and every release so far.

    ``selected`` of the ``population`` parties are chosen each round (fixed size).
    """

    config: ClientDPParams
    delta: float
    selected: int
    population: int
    clip_norm: float = 0.0
    # noise multiplier of each release (noise std / add-remove sensitivity) -> releases
    releases: dict[float, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clip_norm = self.config.clip_norm

    @property
    def sample_rate(self) -> float:
        return self.selected / self.population

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
        self,
        update_sum: np.ndarray,
        bit_sum: float,
        m: int,
        noise: NoiseSource,
        *,
        contributors: int | None = None,
    ) -> np.ndarray:
        """The released mean update; accounts the release and adapts the clip norm.

        ``bit_sum`` is the sum of centred bits; ``contributors`` the parties whose update
        (and, with distributed noise, noise share) is in the sum (default ``m``).
        """
        if self.config.noise is ClientDPNoise.COORDINATOR:
            std = self.update_noise_multiplier(m) * self.clip_norm
            update_sum = update_sum + noise.normal(std, update_sum.shape)
            if self.config.adaptive_clipping:
                bit_sum += float(noise.normal(self.bit_stddev(m), 1)[0])
        self.account_release(m, m if contributors is None else contributors)
        mean = update_sum / m
        if self.config.adaptive_clipping:
            unclipped = bit_sum / m + BIT_SENSITIVITY
            step = -self.config.clip_learning_rate * (unclipped - self.config.target_quantile)
            self.clip_norm *= math.exp(step)
        return mean

    def account_release(self, m: int, contributors: int) -> None:
        """Record one noisy release of a round with ``m`` selected parties, ``contributors``
        of them in the sum: its noise multiplier over both sensitivities. :meth:`finish`
        calls it; a collector calls it too for a distributed-noise sum it unmasked but then
        rejected (that sum was released all the same)."""
        share = 1.0
        if self.config.noise is ClientDPNoise.DISTRIBUTED:  # only contributors' noise shares
            share = contributors / m
        scale = math.sqrt(share)
        precision = (self.update_noise_multiplier(m) * scale) ** -2
        if self.config.adaptive_clipping:
            precision += (self.bit_stddev(m) * scale / BIT_SENSITIVITY) ** -2
        z = 1 / math.sqrt(precision)
        self.releases[z] = self.releases.get(z, 0) + 1

    @property
    def rounds(self) -> int:
        return sum(self.releases.values())

    def spends(self) -> list[Spend]:
        """The releases as accounting events (see the module docstring)."""
        if self.selected >= self.population:
            return [GaussianSpend(z, 1.0, k) for z, k in self.releases.items()]
        # Replace-one: swapping one party moves the clipped sum by 2C and the bit sum by 1.
        return [
            FixedSizeGaussianSpend(z / 2, self.selected, self.population, k)
            for z, k in self.releases.items()
        ]

    def restore(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Continue after ``len(history)`` completed rounds (their ``privacy`` records)."""
        if history:
            last = history[-1]
            self.clip_norm = float(last.get("next_clip_norm", self.clip_norm))
            self.releases = {float(z): int(k) for z, k in last.get("releases", [])}

    def record(self, clip_norm_used: float) -> dict[str, Any]:
        """The cumulative spend after this round, for ``RoundRecord.privacy``."""
        return {
            "level": "client",
            "epsilon": epsilon(self.spends(), self.delta, ACCOUNTING),
            "delta": self.delta,
            "accounting": ACCOUNTING.value,
            "noise_multiplier": self.config.noise_multiplier,
            "clip_norm": clip_norm_used,
            "adaptive_clipping": self.config.adaptive_clipping,
            "next_clip_norm": self.clip_norm,  # what a resumed job continues from
            "noise": self.config.noise.value,
            "sample_rate": self.sample_rate,
            "selection": f"{self.selected} of {self.population} parties (fixed size)",
            "relation": "add/remove" if self.selected >= self.population else "replace-one",
            "releases": [[z, k] for z, k in sorted(self.releases.items())],
        }
