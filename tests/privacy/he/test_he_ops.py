"""Homomorphic operations, identical tests for both backends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.privacy.he import HeScheme, load_public
from fedsilo.privacy.he.ckks import CkksVector

from .conftest import ATOL, RTOL, Keys, keys_for

values = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def check(keys: Keys, got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(
        got, np.atleast_1d(want), rtol=RTOL[keys.scheme], atol=ATOL[keys.scheme]
    )


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 3))
    a = draw(arrays(np.float64, n, elements=values))
    b = draw(arrays(np.float64, n, elements=values))
    m = draw(arrays(np.float64, (n, d), elements=values))
    return a, b, m


@pytest.mark.parametrize("scheme", list(HeScheme), ids=[s.value for s in HeScheme])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_homomorphic_ops_match_plaintext(
    scheme: HeScheme, problem: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    keys = keys_for(scheme)
    a, b, m = problem
    pub, sec = keys.public, keys.secret
    ea, eb = pub.encrypt(a), pub.encrypt(b)
    assert len(ea) == len(a)
    check(keys, sec.decrypt(ea), a)
    check(keys, sec.decrypt(ea + eb), a + b)
    check(keys, sec.decrypt(ea.add_plain(b)), a + b)
    check(keys, sec.decrypt(ea.mul_plain(b)), a * b)
    check(keys, sec.decrypt(ea.sum()), a.sum())
    assert len(ea.sum()) == 1
    mm = ea.matmul_plain(m)
    assert len(mm) == m.shape[1]
    check(keys, sec.decrypt(mm), a @ m)


def test_chained_ops_within_depth(keys: Keys) -> None:
    """(Enc(a) * b) @ M + mask: the shape of a host's masked gradient."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, 40), rng.uniform(-1, 1, 40)
    m = rng.uniform(-10, 10, (40, 3))
    mask = rng.uniform(-100, 100, 3)
    out = keys.public.encrypt(a).mul_plain(b).matmul_plain(m).add_plain(mask)
    check(keys, keys.secret.decrypt(out), (a * b) @ m + mask)


def test_sparse_and_zero_matrix_columns(keys: Keys) -> None:
    a = np.array([1.5, -2.0, 3.25, 0.0])
    m = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 5.0, 0.0]])
    check(keys, keys.secret.decrypt(keys.public.encrypt(a).matmul_plain(m)), a @ m)


def test_encryption_is_randomized(keys: Keys) -> None:
    x = np.array([1.0, 2.0, 3.0])
    pub = keys.public
    assert pub.serialize_vector(pub.encrypt(x)) != pub.serialize_vector(pub.encrypt(x))


def test_paillier_is_exact_to_the_fixed_point_encoding() -> None:
    keys = keys_for(HeScheme.PAILLIER)
    x = np.array([1e-10, -123456.789, np.pi, 2.0**-60, 1e12])
    got = keys.secret.decrypt(keys.public.encrypt(x))
    want = np.round(np.ldexp(x, 52)) / 2.0**52  # default precision_exponent -13: 16**-13 == 2**-52
    np.testing.assert_array_equal(got, want)
    # Additions of independently encrypted, serialized vectors share the exponent and stay exact.
    other = load_public(HeScheme.PAILLIER, keys.public_bytes)
    wire_a = keys.public.serialize_vector(keys.public.encrypt(x))
    wire_b = other.serialize_vector(other.encrypt(x))
    total = keys.secret.deserialize_vector(wire_a) + keys.secret.deserialize_vector(wire_b)
    np.testing.assert_array_equal(keys.secret.decrypt(total), 2 * want)


def test_ckks_vectors_longer_than_one_ciphertext_are_chunked() -> None:
    keys = keys_for(HeScheme.CKKS)
    slots = keys.secret.config.slot_count  # type: ignore[attr-defined]
    n = slots + 5
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-10, 10, n), rng.uniform(-10, 10, n)
    m = rng.uniform(-1, 1, (n, 2))
    pub, sec = keys.public, keys.secret
    ea = pub.encrypt(a)
    assert isinstance(ea, CkksVector) and len(ea.chunks) == 2 and len(ea) == n
    eb = pub.deserialize_vector(pub.serialize_vector(pub.encrypt(b)))
    check(keys, sec.decrypt(ea + eb), a + b)
    check(keys, sec.decrypt(ea.add_plain(b)), a + b)
    check(keys, sec.decrypt(ea.mul_plain(b)), a * b)
    np.testing.assert_allclose(sec.decrypt(ea.sum()), [a.sum()], atol=1e-2)
    np.testing.assert_allclose(sec.decrypt(ea.matmul_plain(m)), a @ m, atol=1e-2)


def test_ckks_depth_exhaustion_is_a_config_error() -> None:
    keys = keys_for(HeScheme.CKKS)
    enc = keys.public.encrypt(np.ones(4)).mul_plain(np.ones(4)).mul_plain(np.ones(4))
    with pytest.raises(ConfigError, match="multiplicative level"):
        enc.mul_plain(np.ones(4))


def test_ckks_refuses_to_add_differently_packed_vectors() -> None:
    keys = keys_for(HeScheme.CKKS)
    pub = keys.public
    packed = pub.encrypt(np.ones(2))
    per_value = pub.encrypt(np.ones(3)).matmul_plain(np.ones((3, 2)))
    with pytest.raises(ProtocolError, match="packed differently"):
        _ = packed + per_value


def test_bad_operands_are_protocol_errors(keys: Keys) -> None:
    pub = keys.public
    enc = pub.encrypt(np.ones(3))
    # each refusal names the operation and what was wrong, the same for both schemes
    with pytest.raises(ProtocolError, match=r"add_plain operand: length 4 does not match .* 3"):
        enc.add_plain(np.ones(4))
    with pytest.raises(ProtocolError, match="mul_plain operand: contains NaN"):
        enc.mul_plain(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ProtocolError, match=r"matmul_plain matrix: .* got shape \(4, 2\)"):
        enc.matmul_plain(np.ones((4, 2)))
    with pytest.raises(ProtocolError, match="lengths 3 and 4"):
        _ = enc + pub.encrypt(np.ones(4))
    with pytest.raises(ProtocolError, match="empty vectors"):
        pub.encrypt(np.array([]))
    with pytest.raises(ProtocolError, match=r"1-D vector, got shape \(2, 2\)"):
        pub.encrypt(np.ones((2, 2)))


def test_vectors_of_different_schemes_do_not_mix() -> None:
    pa, ck = keys_for(HeScheme.PAILLIER), keys_for(HeScheme.CKKS)
    with pytest.raises(ProtocolError, match="paillier"):
        _ = pa.public.encrypt(np.ones(2)) + ck.public.encrypt(np.ones(2))
    with pytest.raises(ProtocolError, match="not encrypted under this key"):
        pa.secret.decrypt(ck.public.encrypt(np.ones(2)))
