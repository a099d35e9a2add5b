from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.privacy.secagg import shamir, wire
from fedsilo.privacy.secagg.protocol import ServerRound, neighbour_graph
from fedsilo.privacy.secagg.quantize import Quantizer, ring_reduce

from .helpers import make_parties, make_setup, run_round


def _inputs(n: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"p{i:03d}": rng.uniform(-1, 1, length) for i in range(n)}


@pytest.mark.parametrize(("n", "degree"), [(3, None), (10, None), (100, 20)])
def test_unmasked_sum_equals_plain_sum_within_quantization_bound(
    n: int, degree: int | None
) -> None:
    setup = make_setup(n, 16, degree=degree)
    quant = Quantizer(clip_range=1.0, bits=32, max_parties=n)
    values = _inputs(n, 16)
    rng = np.random.default_rng(1)
    encoded = {p: quant.encode(v, rng) for p, v in values.items()}

    total, survivors, _ = run_round(setup, encoded)

    assert len(survivors) == n
    plain = np.sum(list(values.values()), axis=0)
    err = np.abs(quant.decode_sum(total, n) - plain)
    assert err.max() <= quant.sum_error_bound(n)
    assert err.max() < 1e-4


def test_ring_sum_is_exact_for_integer_inputs() -> None:
    setup = make_setup(5, 8, bits=20)
    rng = np.random.default_rng(2)
    ints = {p: rng.integers(0, 2**16, 8).astype(np.uint32) for p in setup.neighbours}
    total, _, _ = run_round(setup, ints)
    expected = ring_reduce(np.sum(list(ints.values()), axis=0).astype(np.uint32), 20)
    np.testing.assert_array_equal(total, expected)


@pytest.mark.parametrize(("n", "degree", "fraction"), [(10, None, 0.5), (40, 16, 0.4)])
def test_dropout_after_masking_still_recovers_survivors_sum(
    n: int, degree: int | None, fraction: float
) -> None:
    setup = make_setup(n, 8, degree=degree, fraction=fraction)
    ints = {p: np.full(8, i + 1, dtype=np.uint32) for i, p in enumerate(setup.neighbours)}
    names = sorted(ints)
    dropped = frozenset(names[:: int(1 / 0.3)][: int(0.3 * n)])
    assert len(dropped) == int(0.3 * n)

    total, survivors, _ = run_round(setup, ints, drop_after_mask=dropped)

    assert sorted(survivors) == sorted(set(names) - dropped)
    expected = sum(int(ints[p][0]) for p in survivors)
    np.testing.assert_array_equal(total, np.full(8, expected, dtype=np.uint32))


def test_dropout_before_masking_and_after_together() -> None:
    setup = make_setup(10, 4)
    ints = {p: np.full(4, i + 1, dtype=np.uint32) for i, p in enumerate(setup.neighbours)}
    names = sorted(ints)
    total, survivors, _ = run_round(
        setup, ints, drop_before_mask=frozenset(names[:2]), drop_after_mask=frozenset(names[2:3])
    )
    assert survivors == names[3:]
    assert int(total[0]) == sum(range(4, 11))


def test_fewer_than_threshold_survivors_aborts_cleanly() -> None:
    setup = make_setup(10, 4, fraction=0.7)  # 7 of 10 shares needed
    ints = {p: np.ones(4, dtype=np.uint32) for p in setup.neighbours}
    with pytest.raises(RoundFailedError, match="threshold"):
        run_round(setup, ints, drop_after_mask=frozenset(sorted(ints)[:4]))


def test_party_refuses_a_second_unmasking_of_the_same_input() -> None:
    setup = make_setup(4, 4)
    parties = make_parties(setup)
    server = ServerRound(setup)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    inbox = server.route_shares({p: parties[p].share(k) for p, k in routed.items()})
    server.collect({p: parties[p].mask(inbox[p], np.zeros(4, dtype=np.uint32)) for p in inbox})
    confirmed = {p: parties[p].confirm(server.confirm_request()) for p in parties}
    relayed = server.route_confirmations(confirmed)
    first = parties["p000"].unmask(relayed["p000"])
    assert {kind for kind, _, _ in first.values()} == {"b"}
    with pytest.raises(ProtocolError, match="out of order"):
        parties["p000"].unmask(relayed["p000"])
    with pytest.raises(ProtocolError, match="out of order"):
        parties["p000"].confirm(["p000", "p002", "p003"])


def test_a_tampered_share_fails_opaquely() -> None:
    setup = make_setup(3, 4)
    parties = make_parties(setup)
    server = ServerRound(setup)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    inbox = server.route_shares({p: parties[p].share(k) for p, k in routed.items()})
    blob = bytearray(inbox["p001"]["p000"])
    blob[-1] ^= 1
    inbox["p001"]["p000"] = bytes(blob)
    with pytest.raises(ProtocolError, match="failed to decrypt"):
        parties["p001"].mask(inbox["p001"], np.zeros(4, dtype=np.uint32))


def _top_bits_p_value(values: np.ndarray, bits: int) -> float:
    buckets = (values.astype(np.uint64) >> np.uint64(bits - 6)).astype(np.int64)
    observed = np.bincount(buckets, minlength=64)
    return float(stats.chisquare(observed).pvalue)


def test_a_masked_input_looks_uniform_and_the_unmasked_one_does_not() -> None:
    length = 20_000
    setup = make_setup(5, length)
    quant = Quantizer(clip_range=1.0, bits=32, max_parties=5)
    rng = np.random.default_rng(3)
    update = rng.normal(0, 0.05, length)  # a realistic, concentrated model update
    encoded = {p: quant.encode(update, rng) for p in setup.neighbours}

    _, _, masked = run_round(setup, encoded)

    # fresh CSPRNG masks each run: a cut at 1e-6 fails an honest run once in a million
    assert _top_bits_p_value(masked["p002"], 32) > 1e-6
    assert _top_bits_p_value(encoded["p002"], 32) < 1e-12


def test_shamir_threshold_recovers_and_fewer_shares_do_not() -> None:
    secret = int.from_bytes(b"\x42" * 32, "big")
    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5])
    assert shamir.combine(shares[2:]) == secret
    assert shamir.combine([shares[0], shares[4], shares[1]]) == secret
    assert shamir.combine(shares[:2]) != secret


def test_neighbour_graph_is_regular_and_symmetric() -> None:
    names = [f"p{i}" for i in range(50)]
    graph = neighbour_graph(names, 12, seed=1)
    assert {len(v) for v in graph.values()} == {12}
    assert all(p in graph[q] for p in names for q in graph[p])
    assert graph == neighbour_graph(names, 12, seed=1)


def test_unmask_request_relays_one_bit_and_one_mac_per_neighbour() -> None:
    relayed = {"a": (True, b"\x01" * 32), "b": (False, b"\x02" * 32)}
    body = wire.unmask_body(relayed)
    assert body == {"confirmations": {"a": [True, "01" * 32], "b": [False, "02" * 32]}}
    assert wire.parse_unmask_body(body) == relayed
    for bad in (0, 1, "true", None):
        with pytest.raises(ProtocolError, match="malformed unmask request"):
            wire.parse_unmask_body({"confirmations": {"a": [bad, "01"]}})


@pytest.mark.parametrize("bits", [16, 32, 48])
def test_stochastic_rounding_is_unbiased_and_stays_in_range(bits: int) -> None:
    """A value a quarter of a step above a grid point rounds up a quarter of the time."""
    quant = Quantizer(clip_range=1.0, bits=bits, max_parties=4)
    grid = 0.3 - (0.3 + 1.0) % quant.step  # a representable value
    values = np.full(200_000, grid + 0.25 * quant.step)
    encoded = quant.encode(values, np.random.default_rng(5))
    low = int(encoded.min())
    assert set(np.unique(encoded).tolist()) == {low, low + 1}
    up = float((encoded == low + 1).mean())
    # float64 keeps 53 bits of y < 2^value_bits: y + u is resolved to 2^(value_bits - 53), a
    # bias that is nil at 32 bits and 2^-7 of a step at 48 (the same with any u)
    resolution = 2.0 ** (quant.value_bits - 53)
    assert abs(up - 0.25) < 4 * (0.25 * 0.75 / len(values)) ** 0.5 + resolution  # 4 sigma
    edges = quant.encode(np.array([-5.0, -1.0, 1.0, 5.0]), np.random.default_rng(6))
    assert edges.tolist() == [0, 0, 2**quant.value_bits - 1, 2**quant.value_bits - 1]


def test_encoding_in_place_gives_the_same_ring_vector() -> None:
    quant = Quantizer(clip_range=1.0, bits=32, max_parties=10)
    values = np.random.default_rng(7).normal(0, 0.8, 1000)  # some beyond the clip range
    expected = quant.encode(values.copy(), np.random.default_rng(8))
    scratch = values.copy()
    np.testing.assert_array_equal(
        quant.encode(scratch, np.random.default_rng(8), overwrite=True), expected
    )
    np.testing.assert_array_equal(quant.encode(values, np.random.default_rng(8)), expected)
    assert np.array_equal(values, np.random.default_rng(7).normal(0, 0.8, 1000))  # untouched
