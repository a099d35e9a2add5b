"""Additive masks for values the arbiter decrypts, chosen so unmasking is exact.

A party that needs a decryption adds a fresh random mask ``r`` under encryption, the arbiter
decrypts ``v + r`` and returns it, and the party subtracts ``r``. Each mask has a random sign
and a magnitude drawn uniformly from ``[1.25, 1.75) * 2**k`` on the grid of even multiples of
``2**(k-52)`` (the float64 spacing there). While ``|v| < 2**(k-2)``, ``v + r`` stays in the
same binade as ``r``, the arbiter's float64 result is ``v + r`` rounded to that grid, and
``(v + r) - r`` is exact (Sterbenz): the party gets ``v`` rounded to ``2**(k-52)`` whatever
the mask was. With an exact scheme (Paillier) training is therefore bit-for-bit reproducible
even though masks come from the OS's random source.

Hiding: ``v + r`` is uniform on an interval of width ``2**(k-1)`` shifted by ``v``, so the
arbiter's view of ``v`` has statistical distance ``|v| / 2**(k-1)`` from its view of 0 (about
1e-7 for ``|v| = 1`` and the Paillier ``k = 24``; 3e-5 for the CKKS ``k = 16``, which must
keep values small for precision). A value that breaks ``|v| < 2**(k-2)`` is refused by
:func:`unmask` (exactness would be lost; such values need a larger ``k``).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import HeScheme

FloatArray = npt.NDArray[np.float64]

MASK_BITS = {HeScheme.PAILLIER: 24, HeScheme.CKKS: 16}
_LOW = 5 << 49  # 1.25 * 2**51


def draw_masks(count: int, bits: int) -> FloatArray:
    """``count`` fresh masks of magnitude in ``[1.25, 1.75) * 2**bits`` (OS randomness)."""
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
    steps = (raw >> np.uint64(14)).astype(np.int64) + _LOW  # uniform in [1.25, 1.75) * 2**51
    magnitude = np.ldexp((2 * steps).astype(np.float64), bits - 52)
    sign = np.where((raw & np.uint64(1)) == 1, -1.0, 1.0)
    return np.asarray(sign * magnitude, dtype=np.float64)


def unmask(masked: npt.ArrayLike, masks: FloatArray, bits: int, what: str) -> FloatArray:
    """``masked - masks``, refusing values too large for the masks' binade."""
    arr = np.asarray(masked, dtype=np.float64)
    if arr.shape != masks.shape:
        raise ProtocolError(
            f"{what}: got {arr.shape[0] if arr.ndim else 0} masked values, expected "
            f"{masks.shape[0]}"
        )
    value = arr - masks
    limit = 2.0 ** (bits - 2)
    if not np.all(np.isfinite(value)) or np.any(np.abs(value) >= limit):
        raise ProtocolError(
            f"{what}: a value exceeds {limit:g} in magnitude, beyond what the masks hide "
            "exactly; lower the learning rate or standardize the features"
        )
    return value
