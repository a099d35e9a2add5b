"""Shared key material for the HE tests.

Keys are generated once per session. Paillier uses a 1024-bit key here *for
speed only* (production default is 2048); CKKS uses the production defaults
(N=8192, primes [60, 40, 40, 60], scale 2**40).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fedsilo.privacy.he import (
    CkksConfig,
    HeScheme,
    PaillierConfig,
    PublicContext,
    SecretContext,
    generate,
    load_public,
)

TEST_CONFIGS = {
    HeScheme.PAILLIER: PaillierConfig(key_bits=1024),  # small key: tests only
    HeScheme.CKKS: CkksConfig(),
}

# Tolerances the suite asserts for inputs in [-10, 10] and short vectors.
# Paillier is exact up to the 2**-52 fixed-point rounding of each input;
# CKKS is approximate (measured max errors ~1e-8 for additions, ~1e-5 for
# products; 1e-3 leaves headroom).
RTOL = {HeScheme.PAILLIER: 1e-12, HeScheme.CKKS: 0.0}
ATOL = {HeScheme.PAILLIER: 1e-12, HeScheme.CKKS: 1e-3}


@dataclass(frozen=True)
class Keys:
    scheme: HeScheme
    secret: SecretContext
    public_bytes: bytes
    public: PublicContext  # as a party receiving only the bytes would hold it


_CACHE: dict[HeScheme, Keys] = {}


def keys_for(scheme: HeScheme) -> Keys:
    if scheme not in _CACHE:
        secret = generate(scheme, TEST_CONFIGS[scheme])
        wire = secret.public().to_bytes()
        _CACHE[scheme] = Keys(scheme, secret, wire, load_public(scheme, wire))
    return _CACHE[scheme]


@pytest.fixture(params=list(HeScheme), ids=[s.value for s in HeScheme])
def keys(request: pytest.FixtureRequest) -> Keys:
    scheme: HeScheme = request.param
    return keys_for(scheme)
