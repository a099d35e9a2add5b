"""Additive masks for values the arbiter decrypts, wide enough to hide them statistically.

A party that needs a decryption adds a fresh random mask ``r`` under encryption, the arbiter
decrypts ``v + r`` and returns it, and the party subtracts ``r``. The arbiter's view of ``v``
is then within statistical distance ``|v| / W`` of its view of ``0``, ``W`` the width of the
mask's range. Each scheme's level is a stated parameter (:data:`MASK_LEVELS`), the party's
own: it never takes the width from the coordinator.

* **Paillier** (exact integers): the ciphertext holds the integer ``V = v * 16**-E`` (``E``
  the vector's fixed-point exponent). The party adds an integer mask uniform on
  ``[0, 2**(h + b) * 16**-E)`` (``secrets``), the arbiter returns the decrypted *integer*
  ``V + R`` (:func:`reveal`, fixed-width bytes), the party subtracts ``R`` and converts, so
  the result is bit-for-bit what a direct decryption of ``v`` gives. With ``h = 40``,
  ``b = 16``: distance ``<= 2**-40`` for every ``|v| <= 2**16`` (``2**-56`` for ``|v| <= 1``);
  larger values are refused by :func:`unmask`. The mask stays far inside the plaintext
  space (about ``2**160`` of ``n / 3 ~ 2**2045`` for a 2048-bit key).
* **CKKS** (approximate reals, decrypted as float64): random sign, magnitude uniform in
  ``[1.25, 1.75) * 2**k`` on the grid of even multiples of ``2**(k-52)``, ``k = h + b + 1``.
  While ``|v| < 2**(k-2)``, ``v + r`` stays in ``r``'s binade and ``(v + r) - r`` is exact
  (Sterbenz), so unmasking adds only float64's rounding at that binade, ``2**(k-52)``, to the
  CKKS error. That rounding bounds ``k``: measured on a 256 x 10 ``matmul_plain`` with the
  default parameters (``tests/vertical/test_masking.py`` repeats it), the max error is 2.7e-6
  without a mask and for ``k <= 30``, 5.3e-6 at ``k = 34`` and 3.5e-4 at ``k = 40``. The
  default ``k = 32`` (``h = 31``, ``b = 0``): distance ``|v| * 2**-31``, i.e. ``2**-31`` for a
  unit value, at an added error of at most ``2**-20``. The ``2**-40`` of Paillier would need
  ``k = 41`` and cost ~5e-4 absolute error per value.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import EncryptedVector, HeScheme, SecretContext
from fedsilo.privacy.he.paillier import PaillierSecretContext, PaillierVector

FloatArray = npt.NDArray[np.float64]

_LOW = 5 << 49  # 1.25 * 2**51
_BASE_BITS = 4  # Paillier's fixed point is base 16


@dataclass(frozen=True)
class MaskLevel:
    """Statistical distance ``<= 2**-hiding_bits`` for every ``|v| <= 2**value_bits``."""

    hiding_bits: int
    value_bits: int

    @property
    def width_bits(self) -> int:
        """log2 of the mask range's width (in units of the value)."""
        return self.hiding_bits + self.value_bits

    def distance(self, value: float) -> float:
        """The arbiter's statistical distance between seeing ``value`` and seeing 0."""
        return abs(value) / 2.0**self.width_bits


MASK_LEVELS = {
    HeScheme.PAILLIER: MaskLevel(hiding_bits=40, value_bits=16),
    HeScheme.CKKS: MaskLevel(hiding_bits=31, value_bits=0),
}


@dataclass(frozen=True)
class Pending:
    """A mask a party keeps until the arbiter's masked decryption comes back."""

    scheme: HeScheme
    floats: FloatArray | None = None  # CKKS
    integers: tuple[int, ...] = ()  # Paillier, at ``exponent``
    exponent: int = 0

    def __len__(self) -> int:
        return len(self.integers) if self.floats is None else len(self.floats)


def ckks_mask_bits(level: MaskLevel) -> int:
    """``k`` of the CKKS masks: their range ``[-1.75, -1.25) u [1.25, 1.75) * 2**k`` is
    ``2**(k-1)`` wide on each side."""
    return level.width_bits + 1


def draw_masks(count: int, bits: int) -> FloatArray:
    """``count`` fresh masks of magnitude in ``[1.25, 1.75) * 2**bits`` (OS randomness)."""
    raw = np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64)
    steps = (raw >> np.uint64(14)).astype(np.int64) + _LOW  # uniform in [1.25, 1.75) * 2**51
    magnitude = np.ldexp((2 * steps).astype(np.float64), bits - 52)
    sign = np.where((raw & np.uint64(1)) == 1, -1.0, 1.0)
    return np.asarray(sign * magnitude, dtype=np.float64)


def mask(vector: EncryptedVector, level: MaskLevel) -> tuple[EncryptedVector, Pending]:
    """``vector + r`` with fresh masks at ``level``, and what the party keeps to unmask."""
    if isinstance(vector, PaillierVector):
        scale_bits = -_BASE_BITS * vector.exponent
        bound = 1 << (level.width_bits + scale_bits)
        ints = tuple(secrets.randbelow(bound) for _ in range(len(vector)))
        return vector.add_integers(ints), Pending(
            HeScheme.PAILLIER, integers=ints, exponent=vector.exponent
        )
    masks = draw_masks(len(vector), ckks_mask_bits(level))
    return vector.add_plain(masks), Pending(HeScheme.CKKS, floats=masks)


def reveal(secret: SecretContext, vector: EncryptedVector) -> npt.NDArray[np.generic]:
    """The arbiter's decryption of a masked vector, as it travels back to the party:
    Paillier as signed big-endian integers (uint8: a 2-byte width, then fixed-width values;
    :func:`revealed_integers`), CKKS as float64."""
    if secret.scheme is HeScheme.PAILLIER:
        values = cast(PaillierSecretContext, secret).decrypt_integers(vector)
        width = max(v.bit_length() for v in values) // 8 + 1
        data = b"".join(v.to_bytes(width, "big", signed=True) for v in values)
        return np.frombuffer(width.to_bytes(2, "big") + data, dtype=np.uint8)
    return secret.decrypt(vector)


def revealed_integers(arr: npt.NDArray[np.generic], what: str) -> list[int]:
    """The integers of a Paillier :func:`reveal` reply (``ProtocolError`` if malformed)."""
    data = arr.tobytes()
    width = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
    body = data[2:]
    if arr.dtype != np.uint8 or arr.ndim != 1 or width == 0 or not body or len(body) % width:
        raise ProtocolError(f"{what}: the masked integers are missing or malformed")
    return [
        int.from_bytes(body[k : k + width], "big", signed=True) for k in range(0, len(body), width)
    ]


def unmask(revealed: npt.ArrayLike, pending: Pending, level: MaskLevel, what: str) -> FloatArray:
    """``revealed - mask``; refuses values outside the range the masks hide (or unmask
    exactly) and replies of the wrong shape or type."""
    arr = np.asarray(revealed)
    if pending.scheme is HeScheme.PAILLIER:
        value = _unmask_integers(arr, pending, what)
        limit = 2.0**level.value_bits
    else:
        assert pending.floats is not None
        if arr.dtype != np.float64 or arr.shape != pending.floats.shape:
            raise ProtocolError(
                f"{what}: got {arr.size} masked values, expected {pending.floats.size}"
            )
        value = arr - pending.floats
        limit = 2.0 ** (ckks_mask_bits(level) - 2)
    if not np.all(np.isfinite(value)) or np.any(np.abs(value) >= limit):
        raise ProtocolError(
            f"{what}: a value exceeds {limit:g} in magnitude, beyond what the masks hide "
            "at their stated level; lower the learning rate or standardize the features"
        )
    return value


def _unmask_integers(arr: npt.NDArray[np.generic], pending: Pending, what: str) -> FloatArray:
    values = revealed_integers(arr, what)
    if len(values) != len(pending):
        raise ProtocolError(f"{what}: got {len(values)} masked values, expected {len(pending)}")
    scale = 1 << (-_BASE_BITS * pending.exponent)
    # the exact rational, rounded once to float64
    return np.array([(v - r) / scale for v, r in zip(values, pending.integers, strict=True)])
