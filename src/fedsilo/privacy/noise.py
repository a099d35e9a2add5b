"""Where differential-privacy randomness comes from: a CSPRNG, drawn where the noise is added.

Every DP mechanism in fedsilo (DP-SGD's Poisson sampling and Gaussian noise at a party,
client-level DP noise at the coordinator or, distributed, at each party, analytics noise)
draws from a :class:`NoiseSource`: the AES-256-CTR keystream (``cryptography``) under a
256-bit key. :meth:`NoiseSource.secure` takes the key from ``os.urandom``, so nobody else,
in particular not the coordinator that sent the fit seed or the parties that know the job
seed, can regenerate the noise and subtract it. That is the default everywhere.

:meth:`NoiseSource.reproducible` keys the same stream with SHA-256 of a seed and a purpose:
the same code path, bit-for-bit repeatable. It exists for simulations only and is reached
only through ``[privacy] reproducible_noise = true``, which is logged, written into
``metrics.json`` and the report, and refused by every deployed party
(:class:`fedsilo.privacy.guard.PrivacyGuard`): noise whose seed another organization knows
protects nobody.

Gaussians: Box-Muller on 53-bit uniforms, and each returned value is the sum of four such
draws divided by two (same distribution), the defence of Holohan & Braghin 2021, "Secure
Random Sampling in Differential Privacy" (Sec. 5.1, n = 2) against floating-point attacks
on the noise, which Opacus's ``secure_mode`` applies too.

>>> a = NoiseSource.reproducible(7, "doc").normal(1.0, (3,))
>>> b = NoiseSource.reproducible(7, "doc").normal(1.0, (3,))
>>> bool((a == b).all()), NoiseSource.secure().reproducible_seed is None
(True, True)
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:  # torch loads with the first tensor noise, not with the job config
    import torch

_KEY_BYTES = 32
_MANTISSA = 53


class NoiseSource:
    """A stream of DP randomness (AES-256-CTR keystream); see the module docstring."""

    __slots__ = ("_stream", "reproducible_seed")

    def __init__(self, key: bytes, *, reproducible_seed: int | None = None) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError("a noise key must be 32 bytes")
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self.reproducible_seed = reproducible_seed  # None: the key came from the OS

    @classmethod
    def secure(cls) -> NoiseSource:
        """A fresh source keyed from ``os.urandom``: what every real mechanism uses."""
        return cls(os.urandom(_KEY_BYTES))

    @classmethod
    def reproducible(cls, seed: int, purpose: str, *indices: int) -> NoiseSource:
        """Simulation only: a source anyone who knows ``seed`` can regenerate."""
        label = "|".join([purpose, *map(str, indices)]).encode()
        key = hashlib.sha256(seed.to_bytes(16, "big", signed=True) + b"|" + label).digest()
        return cls(key, reproducible_seed=seed)

    @classmethod
    def for_mechanism(
        cls, reproducible_seed: int | None, purpose: str, *indices: int
    ) -> NoiseSource:
        """:meth:`secure` unless a simulation set ``reproducible_seed``."""
        if reproducible_seed is None:
            return cls.secure()
        return cls.reproducible(reproducible_seed, purpose, *indices)

    # -- draws ------------------------------------------------------------------------------
    def _words(self, count: int) -> npt.NDArray[np.uint64]:
        raw = self._stream.update(bytes(8 * count))
        return np.frombuffer(raw, dtype=np.uint64)

    def uniform(self, count: int) -> npt.NDArray[np.float64]:
        """``count`` uniforms on ``[0, 1)``, multiples of ``2**-53``."""
        top = (self._words(count) >> np.uint64(64 - _MANTISSA)).astype(np.float64)
        return np.ldexp(top, -_MANTISSA)

    def bernoulli(self, probability: float, count: int) -> npt.NDArray[np.bool_]:
        """``count`` independent coins with ``P(True) = probability`` (Poisson sampling)."""
        return self.uniform(count) < probability

    def _standard_normal(self, count: int) -> npt.NDArray[np.float64]:
        pairs = (count + 1) // 2
        u = self.uniform(2 * pairs)
        radius = np.sqrt(-2.0 * np.log1p(-u[:pairs]))  # 1 - u in (0, 1]: log is finite
        angle = 2.0 * math.pi * u[pairs:]
        return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]

    def normal(self, std: float, shape: int | Sequence[int]) -> npt.NDArray[np.float64]:
        """Gaussian noise ``N(0, std^2)`` of ``shape`` (float64)."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(dims)
        if std == 0 or count == 0:
            return np.zeros(dims)
        draws = self._standard_normal(4 * count).reshape(4, count)
        out: npt.NDArray[np.float64] = (std * draws.sum(axis=0) / 2.0).reshape(dims)
        return out

    def laplace(self, scale: float, shape: int | Sequence[int]) -> npt.NDArray[np.float64]:
        """Laplace noise of ``scale`` (inverse CDF on 53-bit uniforms; not hardened against
        floating-point attacks the way :meth:`normal` is)."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        u = self.uniform(math.prod(dims)) - 0.5  # [-1/2, 1/2)
        out: npt.NDArray[np.float64] = (-scale * np.sign(u) * np.log1p(-2.0 * np.abs(u))).reshape(
            dims
        )
        return out

    def normal_like(self, std: float, reference: torch.Tensor) -> torch.Tensor:
        """Gaussian noise shaped and typed like ``reference`` (for Opacus's gradients)."""
        import torch

        values = self.normal(std, tuple(reference.shape))
        return torch.from_numpy(values).to(dtype=reference.dtype, device=reference.device)
