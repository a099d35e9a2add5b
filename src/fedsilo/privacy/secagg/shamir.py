"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

Shamir 1979. A secret ``s < 2^512`` is the constant term of a random polynomial of degree
``t - 1``; share ``i`` is the polynomial at ``x_i != 0``. Any ``t`` shares give ``s`` by
Lagrange interpolation at 0; fewer reveal nothing (information-theoretically). Coefficients
come from :mod:`secrets`. Used by SecAgg to share each party's mask key and self-mask seed
(32-byte secrets, well below the field size).

>>> shares = split(1234, 2, [1, 2, 3])
>>> combine([shares[0], shares[2]])
1234
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from fedsilo.errors import ProtocolError

PRIME = 2**521 - 1  # a Mersenne prime
SHARE_BYTES = 66  # ceil(521 / 8)


def split(secret: int, threshold: int, xs: Sequence[int]) -> list[tuple[int, int]]:
    """Shares ``(x, f(x))`` of ``secret`` for each x in ``xs``; any ``threshold`` recover it."""
    if not (0 <= secret < PRIME):
        raise ValueError("secret must be in [0, 2^521 - 1)")
    if not (1 <= threshold <= len(xs)):
        raise ValueError(f"threshold {threshold} must be in [1, {len(xs)}] shares")
    if len(set(xs)) != len(xs) or any(not (0 < x < PRIME) for x in xs):
        raise ValueError("share points must be distinct and non-zero")
    coeffs = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coeffs):
            y = (y * x + c) % PRIME
        shares.append((x, y))
    return shares


def combine(shares: Sequence[tuple[int, int]]) -> int:
    """The secret from (at least threshold) shares, by Lagrange interpolation at 0."""
    xs = [x for x, _ in shares]
    if not shares or len(set(xs)) != len(xs):
        raise ProtocolError("secret reconstruction needs shares at distinct points")
    secret = 0
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    return secret
