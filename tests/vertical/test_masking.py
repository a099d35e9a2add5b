"""Hetero-LR masks meet their stated hiding level, and unmasking keeps the schemes' precision.

The arbiter (the coordinator) decrypts ``v + r``; its view of ``v`` is within statistical
distance ``|v| / W`` of its view of 0, ``W`` the mask range's width. Paillier's level is
2^-40 for every ``|v| <= 2^16``; CKKS's is ``|v| * 2^-31``, as far as float64 decryption
allows (the measurement below is the docstring's table of ``fedsilo.vertical.masking``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig
from fedsilo.privacy.he.ckks import generate_ckks
from fedsilo.privacy.he.paillier import PaillierVector, generate_paillier
from fedsilo.vertical.masking import (
    MASK_LEVELS,
    MaskLevel,
    ckks_mask_bits,
    draw_masks,
    mask,
    reveal,
    revealed_integers,
    unmask,
)

PAILLIER = MASK_LEVELS[HeScheme.PAILLIER]
CKKS = MASK_LEVELS[HeScheme.CKKS]


@pytest.fixture(scope="module")
def paillier():  # type: ignore[no-untyped-def]
    return generate_paillier(PaillierConfig(key_bits=1024))


def test_stated_levels() -> None:
    assert PAILLIER.hiding_bits >= 40 and PAILLIER.distance(2.0**16) <= 2.0**-40
    assert PAILLIER.distance(1.0) == 2.0**-56
    assert CKKS.distance(1.0) == 2.0**-31  # was 2^-15 with 16-bit masks


def test_paillier_masks_span_2_to_the_40_times_the_value_bound(paillier) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    pub = paillier.public()
    x = rng.normal(size=(6, 3))
    vector = pub.encrypt(rng.normal(size=6)).matmul_plain(x)  # exponent -26: products
    assert isinstance(vector, PaillierVector)
    scale_bits = -4 * vector.exponent
    width = 2 ** (PAILLIER.width_bits + scale_bits)  # 2^(40 + 16) value units
    pendings = [mask(vector, PAILLIER)[1] for _ in range(40)]
    drawn = [r for p in pendings for r in p.integers]
    assert all(0 <= r < width for r in drawn)
    assert max(drawn) > width * 0.9 and min(drawn) < width * 0.1  # the whole range is used
    assert len(set(drawn)) == len(drawn)  # fresh every time
    # The masked plaintext stays far inside the plaintext space (no wrap-around).
    assert width.bit_length() + 8 < pub.public_key.max_int.bit_length()


def test_paillier_unmasking_is_exactly_the_direct_decryption(paillier) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    pub = paillier.public()
    vector = pub.encrypt(rng.normal(0, 3, size=8)).matmul_plain(rng.normal(size=(8, 4)))
    direct = paillier.decrypt(vector)
    for _ in range(3):
        masked, pending = mask(pub.deserialize_vector(pub.serialize_vector(vector)), PAILLIER)
        wire = reveal(paillier, pub.deserialize_vector(pub.serialize_vector(masked)))
        assert wire.dtype == np.uint8  # integers, not float64: no precision lost to the mask
        seen = revealed_integers(wire, "gradient")
        assert min(seen) > 2**60  # the arbiter sees the mask-dominated integer
        assert np.array_equal(unmask(wire, pending, PAILLIER, "gradient"), direct)


def test_paillier_refuses_values_beyond_the_stated_bound(paillier) -> None:  # type: ignore[no-untyped-def]
    pub = paillier.public()
    masked, pending = mask(pub.encrypt([2.0**16, 1.0]), PAILLIER)
    with pytest.raises(ProtocolError, match="beyond what the masks hide"):
        unmask(reveal(paillier, masked), pending, PAILLIER, "gradient")
    with pytest.raises(ProtocolError, match="malformed"):
        unmask(np.zeros(3, dtype=np.float64), pending, PAILLIER, "gradient")


def test_ckks_masks_meet_the_level_and_keep_ckks_precision() -> None:
    k = ckks_mask_bits(CKKS)
    masks = draw_masks(10_000, k)
    assert np.all(np.abs(masks) >= 1.25 * 2.0**k) and np.all(np.abs(masks) < 1.75 * 2.0**k)
    assert CKKS.distance(1.0) == 1.0 / 2.0 ** (k - 1)  # 2^(k-1) wide on each side
    secret = generate_ckks(CkksConfig())
    pub = secret.public()
    rng = np.random.default_rng(0)
    x, d = rng.normal(size=(256, 10)), rng.normal(size=256) * 0.5
    vector = pub.encrypt(d).matmul_plain(x / 256)
    truth = d @ (x / 256)
    baseline = np.abs(secret.decrypt(vector) - truth).max()

    def error(level: MaskLevel) -> float:
        masked, pending = mask(vector, level)
        return float(np.abs(unmask(reveal(secret, masked), pending, level, "g") - truth).max())

    default = max(error(CKKS) for _ in range(3))
    assert default < baseline + 2.0**-20 + 1e-6  # float64 rounding at 2^32: <= 2^-20
    wide = MaskLevel(hiding_bits=40, value_bits=0)  # Paillier's 2^-40 would cost this
    assert max(error(wide) for _ in range(3)) > 20 * baseline
