"""Tests of PSI row alignment (fedsilo.vertical.psi / ids).

The protocol runs at fpr=1e-9 (the default for these small sets, with the GCS
data structure): a false-positive match would make an exact-equality assertion
fail, but with that bound it is practically impossible, so the tests compare with
the true intersection exactly.
"""

from __future__ import annotations

import contextlib
import math
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo.errors import ConfigError, DataError, ProtocolError
from fedsilo.vertical import (
    AlignedRows,
    DuplicatePolicy,
    IdNormalization,
    PsiClient,
    PsiDataStructure,
    PsiServer,
    RevealTo,
    align_in_process,
    alignment_report,
    normalize_id,
    normalize_ids,
)


def _ids(prefix: str, numbers: range | list[int]) -> list[str]:
    return [f"{prefix}{n:06d}" for n in numbers]


def _run(client_ids, server_ids, *, reveal=RevealTo.BOTH, **kwargs):
    """Run the byte-level protocol step by step; return results and all messages."""
    client_kwargs = {k: v for k, v in kwargs.items() if k in {"seed", "batch_size", "duplicates"}}
    server_kwargs = {k: v for k, v in kwargs.items() if k in {"batch_size", "duplicates"}}
    client = PsiClient(client_ids, party="bank", reveal=reveal, **client_kwargs)
    server = PsiServer(server_ids, party="retailer", reveal=reveal, **server_kwargs)
    request = client.request()
    setup = server.setup_message(client.num_elements)
    response = server.respond(request)
    rows = client.intersect(setup, response)
    finish = client.finish_message()
    server_rows = server.finish(finish)
    messages = {"request": request, "setup": setup, "response": response, "finish": finish}
    return client, server, rows, client.aligned_rows(), server_rows, messages


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (1.0, "1"),
        ("1.0", "1"),
        (" 1.00 ", "1"),
        (np.int64(7), "7"),
        (np.float64(7.0), "7"),
        ("007", "007"),
        (1.5, "1.5"),
        ("  Alice   Smith ", "alice smith"),
        ("ABC", "abc"),
        ("Straße", "strasse"),
        (b"Xy", "xy"),
    ],
)
def test_normalize_id(value: object, expected: str) -> None:
    assert normalize_id(value) == expected


def test_normalization_is_configurable() -> None:
    keep = IdNormalization(casefold=False, strip=False, collapse_whitespace=False)
    assert normalize_id(" A  b ", keep) == " A  b "
    assert normalize_id(" A  b ", IdNormalization(casefold=False)) == "A b"


@pytest.mark.parametrize("bad", [None, float("nan"), np.nan, "   ", True, math.inf])
def test_missing_ids_name_party_column_and_row(bad: object) -> None:
    with pytest.raises(DataError, match=r"party 'bank', column 'cust', row 2"):
        normalize_ids(["a", "b", bad, "c"], party="bank", column="cust")
    with pytest.raises(DataError):
        normalize_id(bad)


def test_nan_id_in_protocol_names_party_and_row() -> None:
    with pytest.raises(DataError, match=r"'retailer'.*row 1"):
        align_in_process(["a"], ["a", None], server_party="retailer")


def test_duplicates_rejected_by_default_with_count_and_first_row() -> None:
    with pytest.raises(DataError) as info:
        normalize_ids(["x", "A", "y", " a", "X", "b"], party="bank")
    message = str(info.value)
    assert "party 'bank'" in message
    assert "2 ID(s)" in message
    assert "row 3" in message and "row 1" in message
    assert "'a'" not in message  # the ID itself is not printed


def test_duplicates_first_keeps_first_row() -> None:
    result = normalize_ids(
        ["x", "A", "y", " a", "X"], party="bank", duplicates=DuplicatePolicy.FIRST
    )
    assert result.ids == ["x", "a", "y"]
    assert result.rows.tolist() == [0, 1, 2]
    assert result.num_rows == 5
    assert result.num_dropped_duplicates == 2


# --------------------------------------------------------------------------- correctness


def _normalized_sets(client_ids, server_ids):
    client = normalize_ids(client_ids, party="c", duplicates=DuplicatePolicy.FIRST)
    server = normalize_ids(server_ids, party="s", duplicates=DuplicatePolicy.FIRST)
    return client, server, set(client.ids) & set(server.ids)


def _check_alignment(client_ids, server_ids, client_rows: AlignedRows, server_rows: AlignedRows):
    client, server, shared = _normalized_sets(client_ids, server_ids)
    client_aligned = [normalize_id(client_ids[i]) for i in client_rows.indices]
    server_aligned = [normalize_id(server_ids[i]) for i in server_rows.indices]
    assert set(client_aligned) == shared
    assert len(client_aligned) == len(shared) == client_rows.num_aligned == server_rows.num_aligned
    assert client_aligned == server_aligned  # same k -> same customer
    # under FIRST, the aligned row is the first row holding that ID
    assert all(
        client.row_of(i) == r for i, r in zip(client_aligned, client_rows.indices, strict=True)
    )
    assert all(
        server.row_of(i) == r for i, r in zip(server_aligned, server_rows.indices, strict=True)
    )
    return client_aligned


def test_random_sets_with_known_overlap_and_variants() -> None:
    rng = random.Random(7)
    numbers = rng.sample(range(10_000), 600)
    shared, only_c, only_s = numbers[:200], numbers[200:400], numbers[400:]
    variants = [
        lambda n: f"Cust-{n}",
        lambda n: f"  cust-{n} ",
        lambda n: f"CUST-{n}",
    ]
    client_ids: list[object] = [rng.choice(variants)(n) for n in shared + only_c]
    server_ids: list[object] = [rng.choice(variants)(n) for n in shared + only_s]
    # numeric IDs: int on one side, float / "x.0" text on the other
    client_ids += [10**9 + n for n in range(50)] + [2 * 10**9 + n for n in range(10)]
    server_ids += [f"{10**9 + n}.0" if n % 2 else float(10**9 + n) for n in range(50)]
    # duplicates (kept once under FIRST)
    client_ids += [f"cust-{n}" for n in shared[:20]]
    server_ids += [f" CUST-{n}" for n in shared[20:40]]
    rng.shuffle(client_ids)
    rng.shuffle(server_ids)

    client_rows, server_rows = align_in_process(
        client_ids, server_ids, duplicates=DuplicatePolicy.FIRST
    )
    aligned = _check_alignment(client_ids, server_ids, client_rows, server_rows)
    assert len(aligned) == 250
    assert aligned == sorted(aligned)  # default order: sorted by normalized ID
    assert client_rows.num_local == len(client_ids)
    assert server_rows.num_local == len(server_ids)


def test_intersect_returns_sorted_client_rows() -> None:
    client_ids = _ids("c", [5, 1, 9, 3, 7, 2])
    server_ids = _ids("c", [9, 2, 5, 100])
    *_, rows, client_rows, _server_rows, _ = _run(client_ids, server_ids)
    assert rows.tolist() == [0, 2, 5]
    assert sorted(client_rows.indices.tolist()) == [0, 2, 5]


def test_seeded_order_is_a_reproducible_permutation() -> None:
    client_ids = _ids("c", range(0, 300))
    server_ids = _ids("c", range(100, 400))
    first = align_in_process(client_ids, server_ids, seed=42)
    again = align_in_process(client_ids, server_ids, seed=42)
    other = align_in_process(client_ids, server_ids, seed=43)
    unseeded = align_in_process(client_ids, server_ids)
    aligned = _check_alignment(client_ids, server_ids, *first)
    assert first[0].indices.tolist() == again[0].indices.tolist()
    assert first[1].indices.tolist() == again[1].indices.tolist()
    assert first[0].indices.tolist() != other[0].indices.tolist()
    assert aligned != sorted(aligned)
    assert sorted(first[0].indices.tolist()) == sorted(unseeded[0].indices.tolist())


def test_empty_and_disjoint_sets() -> None:
    for client_ids, server_ids in [([], ["a"]), (["a"], []), ([], []), (["a", "b"], ["c"])]:
        client_rows, server_rows = align_in_process(client_ids, server_ids)
        assert client_rows.num_aligned == server_rows.num_aligned == 0
        assert client_rows.indices.size == server_rows.indices.size == 0


def test_tiny_sets_always_accepted() -> None:
    # Honest one- and two-element GCS setups have a large hash range over very few bits;
    # an earlier plausibility bound rejected about one in three hundred of them.
    for trial in range(300):
        client_rows, _ = align_in_process(["a", "b", f"x{trial}"], ["c", f"x{trial}"])
        assert client_rows.indices.tolist() == [2]


_CRAFTED_GCS = """
import itertools, sys
import private_set_intersection.python as psi
from fedsilo.errors import ProtocolError
from fedsilo.vertical.psi import PsiClient, PsiServer, _Writer, _KIND_SETUP

client = PsiClient([f"c{i}" for i in range(20)], party="bank")
server = PsiServer([f"c{i}" for i in range(50)], party="retailer")
request = client.request()
server.setup_message(client.num_elements)
response = server.respond(request)
rejected = 0
for div, hash_range, bits in itertools.product(
    [0, 1, 8, 9, 31, 33, 62], [1, 1000, 1 << 40, 1 << 62], [b"", b"\\x01", b"\\x80", b"\\xff" * 3]
):
    setup = psi.ServerSetup()
    setup.gcs.div, setup.gcs.hash_range, setup.gcs.bits = div, hash_range, bits
    writer = _Writer(_KIND_SETUP)
    writer.u64(client.num_elements)
    writer.u64(1)
    writer.blob(setup.SerializeToString())
    try:
        client.intersect(writer.getvalue(), response)
    except ProtocolError:
        rejected += 1
print("survived", rejected)
"""


def test_truncated_golomb_stream_does_not_crash_the_client() -> None:
    # A stream cut off right after a unary stop bit makes the library's decoder read the
    # remainder past its buffer; without our zero padding this process dies (SIGSEGV).
    done = subprocess.run(
        [sys.executable, "-c", _CRAFTED_GCS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("survived")


def test_bloom_filter_finds_the_intersection() -> None:
    # openmined-psi's Bloom filter exceeds its declared fpr (see PsiDataStructure),
    # so only check that it finds every shared ID.
    client_ids = _ids("c", range(0, 200))
    server_ids = _ids("c", range(150, 300))
    client_rows, _ = align_in_process(
        client_ids,
        server_ids,
        reveal=RevealTo.CLIENT_ONLY,
        data_structure=PsiDataStructure.BLOOM_FILTER,
    )
    assert {client_ids[i] for i in client_rows.indices} >= set(_ids("c", range(150, 200)))


def test_unreachable_gcs_fpr_is_a_config_error() -> None:
    server = PsiServer(_ids("s", range(1000)), party="retailer", fpr=1e-12)
    with pytest.raises(ConfigError, match="smallest reachable fpr"):
        server.setup_message(10_000)
    # unset, the fpr becomes the smallest reachable one and the protocol works
    client_ids = _ids("s", range(500, 3500))
    client_rows, server_rows = align_in_process(client_ids, _ids("s", range(1000)))
    assert client_rows.num_aligned == server_rows.num_aligned == 500


def test_results_are_read_only_and_report() -> None:
    client_rows, server_rows = align_in_process(
        ["a", "b", "c"], ["b", "c", "d", "e"], client_party="bank", server_party="retailer"
    )
    with pytest.raises(ValueError):
        client_rows.indices[0] = 5
    report = alignment_report(client_rows, server_rows)
    assert report["num_aligned"] == 2
    assert report["parties"]["bank"]["num_rows"] == 3
    assert report["parties"]["retailer"]["num_rows"] == 4
    assert report["parties"]["bank"]["role"] == "client"
    mismatched = AlignedRows(np.zeros(1, dtype=np.int64), num_local=4, num_aligned=1)
    with pytest.raises(ProtocolError):
        alignment_report(client_rows, mismatched)


# --------------------------------------------------------------------------- leakage


def test_client_only_server_learns_no_ids() -> None:
    client_ids = _ids("bank-", range(0, 60))
    server_ids = _ids("bank-", range(40, 100))
    _, _, rows, client_rows, server_rows, messages = _run(
        client_ids, server_ids, reveal=RevealTo.CLIENT_ONLY
    )
    # the server's result holds no rows, only the count
    assert server_rows.blind
    assert server_rows.indices.size == 0
    assert server_rows.num_aligned == 20
    # nothing the server receives contains any client ID
    for name in ("request", "finish"):
        for text in client_ids:
            assert text.encode() not in messages[name]
    # nothing the server sends contains any server ID
    for name in ("setup", "response"):
        for text in server_ids:
            assert text.encode() not in messages[name]
    # the client learns only shared IDs
    assert {client_ids[i] for i in client_rows.indices} == set(_ids("bank-", range(40, 60)))
    assert set(rows.tolist()) == set(client_rows.indices.tolist())
    report = alignment_report(client_rows, server_rows)
    assert report["parties"]["retailer"]["knows_rows"] is False


def test_both_reveals_only_shared_ids() -> None:
    client_ids = _ids("bank-", range(0, 60))
    server_ids = _ids("bank-", range(40, 100))
    shared = set(_ids("bank-", range(40, 60)))
    *_, client_rows, server_rows, messages = _run(client_ids, server_ids, reveal=RevealTo.BOTH)
    for text in client_ids:
        assert (text.encode() in messages["finish"]) == (text in shared)
        assert text.encode() not in messages["request"]
    for text in server_ids:
        assert text.encode() not in messages["setup"]
        assert text.encode() not in messages["response"]
    assert {client_ids[i] for i in client_rows.indices} == shared
    assert {server_ids[i] for i in server_rows.indices} == shared


# --------------------------------------------------------------------------- batching


def test_batching_matches_single_batch_and_reports_progress() -> None:
    client_ids = _ids("c", range(0, 230))
    server_ids = _ids("c", range(100, 345))
    single = align_in_process(client_ids, server_ids, batch_size=100_000)
    calls: list[tuple[int, int]] = []
    batched = align_in_process(
        client_ids, server_ids, batch_size=40, on_progress=lambda d, t: calls.append((d, t))
    )
    for one, many in zip(single, batched, strict=True):
        assert one.indices.tolist() == many.indices.tolist()
    _check_alignment(client_ids, server_ids, *batched)

    # split the calls into steps: each step's counts increase and end at its total
    steps: list[list[tuple[int, int]]] = []
    for done, total in calls:
        if not steps or done <= steps[-1][-1][0] or total != steps[-1][-1][1]:
            steps.append([])
        steps[-1].append((done, total))
    # client request (230), server setup (245), server respond (230), client intersect (its
    # 230 IDs, each batch checked against all 7 server batches: still 230 IDs, not 230 * 7)
    assert [s[-1][1] for s in steps] == [230, 245, 230, 230]
    for step in steps:
        dones = [d for d, _ in step]
        assert dones == sorted(set(dones))
        assert dones[-1] == step[-1][1]
    assert [len(s) for s in steps] == [6, 7, 6, 6]  # one call per batch: ceil(n / 40)


# --------------------------------------------------------------------------- errors


def _session():
    client = PsiClient(_ids("c", range(30)), party="bank", batch_size=8)
    server = PsiServer(_ids("c", range(20, 50)), party="retailer", batch_size=8)
    request = client.request()
    setup = server.setup_message(client.num_elements)
    return client, server, request, setup


def _corruptions(message: bytes) -> list[bytes]:
    rng = random.Random(len(message))
    out = [b"", b"junk", message[:5], message[:-1], message + b"\x00", message[:7] + b"\xff" * 8]
    for _ in range(25):
        data = bytearray(message)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data))
    return out


def test_malformed_request_is_protocol_error() -> None:
    _, _, request, _ = _session()
    for bad in _corruptions(request):
        _, server, _, _ = _session()
        with contextlib.suppress(ProtocolError):
            server.respond(bad)


def test_malformed_setup_and_response_are_protocol_errors() -> None:
    client, server, request, setup = _session()
    response = server.respond(request)
    for bad in _corruptions(setup):
        with contextlib.suppress(ProtocolError):
            client.intersect(bad, response)
    for bad in _corruptions(response):
        with contextlib.suppress(ProtocolError):
            client.intersect(setup, bad)
    with pytest.raises(ProtocolError, match="not a fedsilo PSI message"):
        client.intersect(b"garbage!", response)
    with pytest.raises(ProtocolError, match="out of order"):
        client.intersect(response, setup)
    with pytest.raises(ProtocolError, match="bytes"):
        client.intersect("text", response)  # type: ignore[arg-type]


def test_malformed_finish_is_protocol_error() -> None:
    client, server, request, setup = _session()
    client.intersect(setup, server.respond(request))
    finish = client.finish_message()
    for bad in _corruptions(finish):
        with contextlib.suppress(ProtocolError):
            server.finish(bad)
    assert server.finish(finish).num_aligned == 10


def test_finish_with_unknown_id_is_protocol_error() -> None:
    client = PsiClient(["a", "b"], party="bank")
    server = PsiServer(["a", "b"], party="retailer")
    request = client.request()
    client.intersect(server.setup_message(2), server.respond(request))
    forged = PsiClient(["a", "zzz"], party="bank")
    forged._order = ["a", "zzz"]  # a client that claims an ID the server lacks
    with pytest.raises(ProtocolError, match="not in this party's ID set"):
        server.finish(forged.finish_message())


def test_out_of_sequence_and_mismatched_config() -> None:
    client = PsiClient(["a", "b"], party="bank", reveal=RevealTo.CLIENT_ONLY)
    server = PsiServer(["a", "b"], party="retailer", reveal=RevealTo.BOTH)
    with pytest.raises(ProtocolError):
        client.aligned_rows()
    with pytest.raises(ProtocolError):
        client.intersect(b"", b"")
    request = client.request()
    with pytest.raises(ProtocolError, match="before the setup"):
        server.respond(request)
    setup = server.setup_message(client.num_elements)
    response = server.respond(request)
    with pytest.raises(ProtocolError, match="second PSI request"):
        server.respond(request)
    client.intersect(setup, response)
    with pytest.raises(ProtocolError, match="CLIENT_ONLY"):
        server.finish(client.finish_message())
    wrong_size = PsiServer(["a"], party="retailer")
    wrong_size.setup_message(5)
    with pytest.raises(ProtocolError, match="setup was made for 5"):
        wrong_size.respond(request)


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        PsiServer(["a"], party="s", fpr=0.0)
    with pytest.raises(ConfigError):
        PsiClient(["a"], party="c", batch_size=0)
    with pytest.raises(ConfigError):
        PsiClient(["a"], party="")


# --------------------------------------------------------------------------- property


_small_ids = st.one_of(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=40).map(float),
    st.integers(min_value=0, max_value=40).map(lambda n: f" {n}.0"),
    st.sampled_from(["a", "A", " a ", "b", "B  c", "b c", "é", "É"]),
)


@settings(max_examples=25, deadline=None)
@given(
    client_ids=st.lists(_small_ids, max_size=25),
    server_ids=st.lists(_small_ids, max_size=25),
    reveal=st.sampled_from(list(RevealTo)),
    batch_size=st.integers(min_value=1, max_value=30),
)
def test_psi_equals_set_intersection(client_ids, server_ids, reveal, batch_size) -> None:
    client_rows, server_rows = align_in_process(
        client_ids,
        server_ids,
        reveal=reveal,
        duplicates=DuplicatePolicy.FIRST,
        batch_size=batch_size,
    )
    _, _, shared = _normalized_sets(client_ids, server_ids)
    assert {normalize_id(client_ids[i]) for i in client_rows.indices} == shared
    assert client_rows.num_aligned == server_rows.num_aligned == len(shared)
    if reveal is RevealTo.BOTH:
        _check_alignment(client_ids, server_ids, client_rows, server_rows)
    else:
        assert server_rows.blind and server_rows.indices.size == 0
