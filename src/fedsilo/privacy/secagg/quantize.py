"""Fixed-point encoding of real vectors into the ring Z_{2^bits}, with headroom for a sum.

Each value is clipped to ``[-clip_range, clip_range]`` and mapped to an integer in
``[0, 2^q - 1]`` with ``q = bits - ceil(log2(max_parties))``, so the sum of up to
``max_parties`` encodings never wraps around the ring. Rounding is stochastic (unbiased:
``floor(y + u)``, ``u ~ U[0, 1)``) from a seeded keystream, so a job is reproducible.

Error bound: with step ``s = 2 * clip_range / (2^q - 1)``, each encoded value is within ``s``
of its clipped input, so a decoded sum of ``count`` vectors is within ``count * s`` of the
sum of the clipped inputs, per coordinate (:meth:`Quantizer.sum_error_bound`). Values beyond
``clip_range`` are clipped first; that error is not bounded here, which is why the clip range
is configurable (``privacy.secure_aggregation.clip_range``).

>>> q = Quantizer(clip_range=1.0, bits=32, max_parties=4)
>>> rng = np.random.default_rng(0)
>>> enc = q.encode(np.array([0.25, -0.5]), rng) + q.encode(np.array([0.5, 0.5]), rng)
>>> bool(np.all(np.abs(q.decode_sum(enc, 2) - [0.75, 0.0]) <= q.sum_error_bound(2)))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsilo.errors import ConfigError
from fedsilo.privacy.secagg import keys


@dataclass(frozen=True)
class Quantizer:
    clip_range: float
    bits: int
    max_parties: int

    def __post_init__(self) -> None:
        if not (16 <= self.bits <= 48):
            raise ConfigError(f"ring bits must be in [16, 48], got {self.bits}")
        if self.max_parties < 1 or self.value_bits < 8:
            raise ConfigError(
                f"{self.bits}-bit ring leaves {self.value_bits} bits per value for "
                f"{self.max_parties} parties; raise privacy.secure_aggregation.bits"
            )
        if not (math.isfinite(self.clip_range) and self.clip_range > 0):
            raise ConfigError(f"clip range must be positive, got {self.clip_range}")

    @property
    def value_bits(self) -> int:
        return self.bits - math.ceil(math.log2(max(self.max_parties, 1)))

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.bits <= 32 else np.uint64

    @property
    def step(self) -> float:
        return 2 * self.clip_range / float(2**self.value_bits - 1)

    def sum_error_bound(self, count: int) -> float:
        """Max per-coordinate error of a decoded sum of ``count`` in-range vectors."""
        return count * self.step

    def encode(
        self, values: np.ndarray, rng: np.random.Generator, *, overwrite: bool = False
    ) -> np.ndarray:
        """Stochastic rounding: ``floor(y + u)``, ``u = r / 2^32`` with ``r`` a uniform 32-bit
        integer from the AES-CTR keystream (:func:`~fedsilo.privacy.secagg.keys.expander`,
        keyed from ``rng``); its 2^-32 resolution biases a rounding probability by at most
        2^-32 of a step. The rounding protects nothing (the coordinator sees only the sum), so
        it may come from a seed the coordinator sent: a job stays reproducible.

        ``overwrite``: ``values`` (float64) is the caller's scratch and is computed in place.
        """
        c = self.clip_range
        y: np.ndarray
        if overwrite and values.dtype == np.float64:
            y = values
        else:
            y = np.array(values, dtype=np.float64)  # a copy: edited in place below
        np.clip(y, -c, c, out=y)  # one pass; maximum then minimum took ~3x as long
        y += c
        y *= 1.0 / self.step  # a product: a vector division costs ~4x
        # the keystream is ~5x faster than Generator.random; one product, one sum
        r = keys.expander(y.size, np.uint32).expand(rng.bytes(keys.KEY_BYTES))
        y += np.multiply(r, 2.0**-32)
        out = y.astype(self.dtype)  # y >= 0 here, so the cast is floor
        np.minimum(out, self.dtype(2**self.value_bits - 1), out=out)
        return out

    def decode_sum(self, total: np.ndarray, count: int) -> np.ndarray:
        return total.astype(np.float64) * self.step - count * self.clip_range


def ring_reduce(values: np.ndarray, bits: int) -> np.ndarray:
    """``values mod 2^bits`` (in place); a no-op when the dtype is exactly ``bits`` wide."""
    if bits < values.dtype.itemsize * 8:
        np.bitwise_and(values, values.dtype.type((1 << bits) - 1), out=values)
    return values
