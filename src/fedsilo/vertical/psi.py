"""Private set intersection (PSI) for aligning the rows of vertical parties.

The guest (label holder) plays the PSI **client** and a host plays the PSI
**server** of openmined-psi's ECDH protocol (semi-honest security). Parties never
talk directly, so every step is a pure method consuming and producing ``bytes``
that a coordinator relays::

    client = PsiClient(bank_ids, party="bank")          # label holder
    server = PsiServer(retail_ids, party="retailer")
    request = client.request()                           # client -> server
    setup = server.setup_message(client.num_elements)    # server -> client
    response = server.respond(request)                   # server -> client
    client.intersect(setup, response)                    # client's rows in the intersection
    bank_rows = client.aligned_rows()
    retail_rows = server.finish(client.finish_message()) # client -> server

Both :class:`AlignedRows` list local row indices so that position ``k`` is the
same customer on both sides.

Agreed order
    Without ``seed`` the aligned customers are ordered by normalized ID (code
    point order). With ``seed`` they are ordered by HMAC-SHA256 of the normalized
    ID under a key derived from the seed: a pseudo-random permutation that is
    reproducible from the seed and where a customer's relative position does not
    depend on which other customers are present. Only the client needs the seed.

What each party learns (``RevealTo``)
    Both: the other side's number of (unique) IDs, the server exactly (from the
    request), the client approximately (from the size of the setup message).
    ``RevealTo.CLIENT_ONLY``: the client learns which of its IDs are shared. The
    server learns only the client's set size and the intersection size (sent in
    the finish message so both sides can report it); its :class:`AlignedRows`
    is ``blind`` (no indices) and its outputs contain no IDs.
    ``RevealTo.BOTH``: the client additionally sends the intersecting normalized
    IDs, in the agreed order, so the server learns the intersection itself (never
    an ID outside it). These IDs travel in the clear through the coordinator:
    relay the finish message over an encrypted, authenticated channel if the
    coordinator must not see them. (Blinding them with a client-keyed HMAC would
    not help: the server must recognise its own IDs, so it would need the key, and
    the key would travel through the same coordinator.)

Batching
    Each side splits its IDs into batches of ``batch_size`` for the cryptographic
    calls, which bounds their working memory; messages still carry every batch.
    The server shuffles its IDs with a fresh random permutation before batching,
    so which server batch matched tells the client nothing. The client checks its
    responses against every server batch, so its ``intersect`` costs grow with the
    number of server batches. The false-positive budget ``fpr`` (the chance that
    any non-shared ID is reported as shared) is split evenly over the server
    batches, so it bounds the whole run. Its default (``fpr=None``) is ``1e-9``, or
    the smallest rate the GCS can reach for the set sizes if that is larger
    (see :class:`PsiDataStructure`); either way a wrong match is practically
    impossible, and under ``RevealTo.BOTH`` the server would reject it.

Malformed or out-of-sequence messages raise :class:`~fedsilo.errors.ProtocolError`.
Messages are validated before they reach the C++ library, because some malformed
inputs abort or crash the process there (found by fuzzing openmined-psi 2.0.6: a
GCS setup with a huge hash range and few bits segfaults). The checks cover what
fuzzing found; they are hardening, not a proof against a peer that targets the
library.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import private_set_intersection.python as psi

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.vertical.ids import DuplicatePolicy, IdNormalization, NormalizedIds, normalize_ids

__all__ = [
    "AlignedRows",
    "PsiClient",
    "PsiDataStructure",
    "PsiServer",
    "RevealTo",
    "align_in_process",
    "alignment_report",
]

ProgressCallback = Callable[[int, int], None]
"""``on_progress(done, total)``: IDs processed so far in the current step, of ``total`` (the
step's IDs: the client's own for its request and intersection, the server's own for its
setup, the client's for the server's response); called once per batch."""

DEFAULT_BATCH_SIZE = 100_000
DEFAULT_FPR = 1e-9

_MAGIC = b"FSPSI1"
_KIND_SETUP = 1
_KIND_REQUEST = 2
_KIND_RESPONSE = 3
_KIND_FINISH = 4
_KIND_NAMES = {1: "setup", 2: "request", 3: "response", 4: "finish"}
_POINT_SIZE = 33  # compressed elliptic-curve point
_MAX_GCS_DIV = 62
_MAX_GCS_HASH_RANGE = 1 << 62  # the library's hash range is an int64
# Largest GCS hash range we ask the library for: it fails (or silently overflows) near 1e18.
_GCS_SAFE_RANGE = 10**17
_MAX_BLOOM_HASHES = 1024
_ORDER_KEY_LABEL = b"fedsilo/vertical/psi/order/v1"


class RevealTo(enum.Enum):
    """Who learns which customers are shared (see the module docstring)."""

    CLIENT_ONLY = "client_only"
    BOTH = "both"


class PsiDataStructure(enum.Enum):
    """How the server encodes its encrypted set in the setup message.

    GCS (default) hashes into a 64-bit range of about ``n_client *
    max(n_client, n_server_batch) / fpr_batch`` values; openmined-psi 2.0.6 fails
    or silently overflows near 1e18, so fedsilo keeps that product below 1e17,
    which bounds the smallest reachable ``fpr`` (about 1e-7 for 100k x 100k).

    The Bloom filter is offered but NOT recommended: measured with openmined-psi
    2.0.6, a 200 x 150 run at ``fpr=1e-9`` returned a false positive in about 1%
    of runs, far above the declared rate. Under ``RevealTo.BOTH`` such a false
    positive makes the server's :meth:`PsiServer.finish` fail with a
    :class:`~fedsilo.errors.ProtocolError`; under ``CLIENT_ONLY`` it goes unnoticed.
    """

    GCS = "gcs"
    """Golomb-compressed set: smaller messages (default)."""
    BLOOM_FILTER = "bloom_filter"
    """Bloom filter: larger messages, faster client-side lookups."""


@dataclass(frozen=True, eq=False)
class AlignedRows:
    """One party's view of the aligned rows.

    ``indices[k]`` is the local (0-based) row of the k-th aligned customer; the
    same ``k`` is the same customer at every party. ``num_local`` is the number of
    rows the party passed in and ``num_aligned`` the number of aligned customers.
    A ``blind`` result (the server under ``RevealTo.CLIENT_ONLY``) knows only
    ``num_aligned``; its ``indices`` are empty.
    """

    indices: npt.NDArray[np.int64]
    num_local: int
    num_aligned: int
    party: str = ""
    role: str = ""
    blind: bool = False

    def __post_init__(self) -> None:
        self.indices.setflags(write=False)
        if not self.blind and len(self.indices) != self.num_aligned:
            raise ValueError("indices must have num_aligned entries unless blind")


# --------------------------------------------------------------------------- wire format


class _Writer:
    def __init__(self, kind: int) -> None:
        self._parts: list[bytes] = [_MAGIC, struct.pack(">B", kind)]

    def u8(self, value: int) -> None:
        self._parts.append(struct.pack(">B", value))

    def u64(self, value: int) -> None:
        self._parts.append(struct.pack(">Q", value))

    def blob(self, data: bytes) -> None:
        self._parts.append(struct.pack(">Q", len(data)))
        self._parts.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class _Reader:
    def __init__(self, data: object, kind: int, party: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(
                f"party {party!r}: expected the PSI {_KIND_NAMES[kind]} message as bytes, "
                f"got {type(data).__name__}"
            )
        self._data = bytes(data)
        self._pos = 0
        self._kind = kind
        self._party = party
        header = self._take(len(_MAGIC) + 1)
        if header[: len(_MAGIC)] != _MAGIC:
            self.fail("it is not a fedsilo PSI message (bad magic or version)")
        if header[-1] != kind:
            got = _KIND_NAMES.get(header[-1], f"unknown kind {header[-1]}")
            self.fail(f"it is a {got} message; messages were relayed out of order")

    def fail(self, why: str) -> NoReturn:
        raise ProtocolError(
            f"party {self._party!r}: malformed PSI {_KIND_NAMES[self._kind]} message: {why}"
        )

    def _take(self, size: int) -> bytes:
        if size > len(self._data) - self._pos:
            self.fail("it is truncated")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def u8(self) -> int:
        value: int = struct.unpack(">B", self._take(1))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self._take(8))[0]
        return value

    def count(self, min_item_size: int) -> int:
        """A count of items that each take at least ``min_item_size`` bytes."""
        value = self.u64()
        if value * min_item_size > len(self._data) - self._pos:
            self.fail(f"it announces {value} items but is too short to hold them")
        return value

    def blob(self) -> bytes:
        return self._take(self.u64())

    def end(self) -> None:
        if self._pos != len(self._data):
            self.fail(f"{len(self._data) - self._pos} unexpected trailing bytes")


def _parse_proto(reader: _Reader, cls: type[Any], what: str) -> Any:
    message = cls()
    try:
        message.ParseFromString(reader.blob())
    except Exception:  # protobuf raises DecodeError; stay robust to its variants
        reader.fail(f"a {what} batch is not a valid protobuf")
    return message


def _check_points(reader: _Reader, elements: Sequence[bytes], what: str) -> None:
    for element in elements:
        if len(element) != _POINT_SIZE or element[0] not in (2, 3):
            reader.fail(f"a {what} element is not a compressed curve point")


def _check_setup(reader: _Reader, setup: Any) -> None:
    kind = setup.WhichOneof("data_structure")
    if kind == "gcs":
        gcs = setup.gcs
        if not 0 <= gcs.div <= _MAX_GCS_DIV or not 1 <= gcs.hash_range <= _MAX_GCS_HASH_RANGE:
            reader.fail("its GCS parameters are out of range")
        # The library's Golomb decoder reads an element's ``div`` remainder bits without a
        # bounds check, so a stream cut short after a unary stop bit would make it read past
        # the buffer. Zero bytes at the end decode as "no further elements", so padding by
        # one remainder's worth keeps every read in bounds without changing the set.
        gcs.bits += bytes(gcs.div // 8 + 2)
    elif kind == "bloom_filter":
        bloom = setup.bloom_filter
        if not 1 <= bloom.num_hash_functions <= _MAX_BLOOM_HASHES or not bloom.bits:
            reader.fail("its Bloom filter parameters are out of range")
    else:
        reader.fail("it uses no supported data structure (GCS or Bloom filter)")


def _library_call(party: str, step: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ProtocolError(f"party {party!r}: PSI {step} failed: {exc}") from exc


# --------------------------------------------------------------------------- helpers


def _check_common(party: str, batch_size: int) -> None:
    if not isinstance(party, str) or not party:
        raise ConfigError("party must be a non-empty name")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"party {party!r}: batch_size must be a positive integer, got {batch_size!r}"
        )


def _batches(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done = 0

    def advance(self, amount: int) -> None:
        self._done += amount
        if self._callback is not None:
            self._callback(self._done, self._total)


def _order_key(seed: int | bytes | str) -> bytes:
    if isinstance(seed, bool):
        raise ConfigError("seed must be an int, str or bytes, not a bool")
    if isinstance(seed, int):
        material = b"int:" + str(seed).encode()
    elif isinstance(seed, str):
        material = b"str:" + seed.encode("utf-8")
    elif isinstance(seed, bytes):
        material = b"bytes:" + seed
    else:
        raise ConfigError(f"seed must be an int, str or bytes, got {type(seed).__name__}")
    return hashlib.sha256(_ORDER_KEY_LABEL + material).digest()


def _agreed_order(ids: list[str], seed: int | bytes | str | None) -> list[str]:
    if seed is None:
        return sorted(ids)
    key = _order_key(seed)
    return sorted(ids, key=lambda i: (hmac.new(key, i.encode("utf-8"), hashlib.sha256).digest(), i))


# --------------------------------------------------------------------------- roles


class PsiServer:
    """The PSI server role (a host, by default): answers one client's request.

    ``ids`` are the party's customer IDs, one per local row. The server accepts
    exactly one request per setup, holding exactly the announced number of
    elements, which limits how much a client can probe.
    """

    def __init__(
        self,
        ids: Iterable[object],
        *,
        party: str,
        column: str = "id",
        reveal: RevealTo = RevealTo.BOTH,
        fpr: float | None = None,
        data_structure: PsiDataStructure = PsiDataStructure.GCS,
        normalization: IdNormalization | None = None,
        duplicates: DuplicatePolicy = DuplicatePolicy.REJECT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        _check_common(party, batch_size)
        if fpr is not None and (not isinstance(fpr, float | int) or not 0.0 < float(fpr) < 1.0):
            raise ConfigError(f"party {party!r}: fpr must be in (0, 1), got {fpr!r}")
        if not isinstance(reveal, RevealTo) or not isinstance(data_structure, PsiDataStructure):
            raise ConfigError(f"party {party!r}: reveal/data_structure must be enum members")
        self.party = party
        self.reveal = reveal
        self.fpr = None if fpr is None else float(fpr)
        self.data_structure = data_structure
        self.batch_size = batch_size
        self.on_progress = on_progress
        self._ids: NormalizedIds = normalize_ids(
            ids, party=party, column=column, normalization=normalization, duplicates=duplicates
        )
        self._psi = psi.server.CreateWithNewKey(True)
        self._expected_client_elements: int | None = None
        self._responded = False
        self._result: AlignedRows | None = None

    @property
    def num_elements(self) -> int:
        """Number of unique normalized IDs this party brings."""
        return len(self._ids.ids)

    def setup_message(self, num_client_elements: int) -> bytes:
        """Encode the server's encrypted set for a client holding that many IDs."""
        if (
            isinstance(num_client_elements, bool)
            or not isinstance(num_client_elements, int)
            or num_client_elements < 0
        ):
            raise ProtocolError(
                f"party {self.party!r}: num_client_elements must be a non-negative integer"
            )
        # Fresh random order, so which server batch matched reveals nothing.
        order = [self._ids.ids[i] for i in _secure_permutation(self.num_elements)]
        batches = _batches(len(order), self.batch_size)
        fpr = self._batch_fpr(num_client_elements, len(batches))
        ds = psi.DataStructure[self.data_structure.name]
        progress = _Progress(self.on_progress, len(order))
        writer = _Writer(_KIND_SETUP)
        writer.u64(num_client_elements)
        writer.u64(len(batches))
        for start, stop in batches:
            chunk = order[start:stop]
            setup = _library_call(
                self.party,
                "setup",
                partial(self._psi.CreateSetupMessage, fpr, max(1, num_client_elements), chunk, ds),
            )
            writer.blob(setup.SerializeToString())
            progress.advance(len(chunk))
        self._expected_client_elements = num_client_elements
        self._responded = False
        return writer.getvalue()

    def _batch_fpr(self, num_client_elements: int, num_batches: int) -> float:
        """Per-setup-batch false-positive rate; the union bound gives ``fpr`` overall."""
        num_batches = max(1, num_batches)
        if self.data_structure is PsiDataStructure.BLOOM_FILTER:
            return (self.fpr or DEFAULT_FPR) / num_batches
        clients = max(1, num_client_elements)
        largest_batch = max(1, min(self.batch_size, self.num_elements))
        smallest = clients * max(clients, largest_batch) * num_batches / _GCS_SAFE_RANGE
        if self.fpr is None:
            return max(DEFAULT_FPR, smallest) / num_batches
        if self.fpr < smallest:
            raise ConfigError(
                f"party {self.party!r}: a GCS setup cannot reach fpr={self.fpr:g} for "
                f"{clients} client and {self.num_elements} server IDs (its 64-bit hash range "
                f"would overflow); the smallest reachable fpr is {smallest:.3g}: raise fpr "
                "or leave it unset to use that"
            )
        return self.fpr / num_batches

    def respond(self, request: bytes) -> bytes:
        """Answer the client's request (call :meth:`setup_message` first)."""
        if self._expected_client_elements is None:
            raise ProtocolError(
                f"party {self.party!r}: PSI request arrived before the setup message was made"
            )
        if self._responded:
            raise ProtocolError(
                f"party {self.party!r}: a second PSI request arrived for the same setup"
            )
        reader = _Reader(request, _KIND_REQUEST, self.party)
        total = reader.u64()
        if total != self._expected_client_elements:
            reader.fail(
                f"it holds {total} elements but the setup was made for "
                f"{self._expected_client_elements}"
            )
        num_batches = reader.count(8)
        requests = []
        seen = 0
        for _ in range(num_batches):
            message = _parse_proto(reader, psi.Request, "request")
            if not message.reveal_intersection:
                reader.fail("it does not ask for the intersection elements")
            _check_points(reader, message.encrypted_elements, "request")
            seen += len(message.encrypted_elements)
            requests.append(message)
        reader.end()
        if seen != total:
            reader.fail(f"its batches hold {seen} elements, not the announced {total}")
        self._responded = True
        progress = _Progress(self.on_progress, total)
        writer = _Writer(_KIND_RESPONSE)
        writer.u64(len(requests))
        for message in requests:
            response = _library_call(
                self.party, "response", partial(self._psi.ProcessRequest, message)
            )
            writer.blob(response.SerializeToString())
            progress.advance(len(message.encrypted_elements))
        return writer.getvalue()

    def finish(self, message: bytes) -> AlignedRows:
        """Read the client's finish message and return this party's aligned rows."""
        if not self._responded:
            raise ProtocolError(
                f"party {self.party!r}: PSI finish message arrived before the request was answered"
            )
        reader = _Reader(message, _KIND_FINISH, self.party)
        mode = reader.u8()
        if mode not in (0, 1):
            reader.fail(f"unknown reveal mode {mode}")
        reveal = RevealTo.BOTH if mode == 1 else RevealTo.CLIENT_ONLY
        if reveal is not self.reveal:
            reader.fail(
                f"the client used {reveal.name} but this party is configured for {self.reveal.name}"
            )
        count = reader.count(8 if reveal is RevealTo.BOTH else 0)
        if count > min(self.num_elements, self._expected_client_elements or 0):
            reader.fail(f"it claims {count} shared customers, more than either set holds")
        if reveal is RevealTo.CLIENT_ONLY:
            reader.end()
            result = AlignedRows(
                indices=np.zeros(0, dtype=np.int64),
                num_local=self._ids.num_rows,
                num_aligned=count,
                party=self.party,
                role="server",
                blind=True,
            )
        else:
            rows = np.empty(count, dtype=np.int64)
            seen: set[str] = set()
            for k in range(count):
                try:
                    text = reader.blob().decode("utf-8")
                except UnicodeDecodeError:
                    reader.fail("an ID is not valid UTF-8")
                row = self._ids.row_of(text)
                if row is None:
                    reader.fail(f"aligned customer #{k} is not in this party's ID set")
                if text in seen:
                    reader.fail(f"aligned customer #{k} is listed twice")
                seen.add(text)
                rows[k] = row
            reader.end()
            result = AlignedRows(
                indices=rows,
                num_local=self._ids.num_rows,
                num_aligned=count,
                party=self.party,
                role="server",
            )
        self._result = result
        return result

    def aligned_rows(self) -> AlignedRows:
        """The result of :meth:`finish`."""
        if self._result is None:
            raise ProtocolError(f"party {self.party!r}: PSI alignment is not finished yet")
        return self._result


class PsiClient:
    """The PSI client role (the label holder, by default): learns the intersection."""

    def __init__(
        self,
        ids: Iterable[object],
        *,
        party: str,
        column: str = "id",
        reveal: RevealTo = RevealTo.BOTH,
        seed: int | bytes | str | None = None,
        normalization: IdNormalization | None = None,
        duplicates: DuplicatePolicy = DuplicatePolicy.REJECT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        _check_common(party, batch_size)
        if not isinstance(reveal, RevealTo):
            raise ConfigError(f"party {party!r}: reveal must be a RevealTo member")
        if seed is not None:
            _order_key(seed)  # validate early
        self.party = party
        self.reveal = reveal
        self.seed = seed
        self.batch_size = batch_size
        self.on_progress = on_progress
        self._ids: NormalizedIds = normalize_ids(
            ids, party=party, column=column, normalization=normalization, duplicates=duplicates
        )
        self._psi = psi.client.CreateWithNewKey(True)
        self._batch_sizes: list[int] | None = None
        self._order: list[str] | None = None

    @property
    def num_elements(self) -> int:
        """Number of unique normalized IDs this party brings (tell the server)."""
        return len(self._ids.ids)

    def request(self) -> bytes:
        """Encrypt this party's IDs for the server."""
        batches = _batches(self.num_elements, self.batch_size)
        progress = _Progress(self.on_progress, self.num_elements)
        writer = _Writer(_KIND_REQUEST)
        writer.u64(self.num_elements)
        writer.u64(len(batches))
        for start, stop in batches:
            chunk = self._ids.ids[start:stop]
            message = _library_call(self.party, "request", partial(self._psi.CreateRequest, chunk))
            writer.blob(message.SerializeToString())
            progress.advance(len(chunk))
        self._batch_sizes = [stop - start for start, stop in batches]
        self._order = None
        return writer.getvalue()

    def intersect(self, setup: bytes, response: bytes) -> npt.NDArray[np.int64]:
        """This party's rows (sorted) whose IDs the server also holds."""
        if self._batch_sizes is None:
            raise ProtocolError(
                f"party {self.party!r}: PSI setup/response arrived before the request was made"
            )
        setup_reader = _Reader(setup, _KIND_SETUP, self.party)
        announced = setup_reader.u64()
        if announced < self.num_elements:
            setup_reader.fail(
                f"it was made for {announced} client elements but this party has "
                f"{self.num_elements}, so its false-positive bound does not hold"
            )
        setups = []
        for _ in range(setup_reader.count(8)):
            message = _parse_proto(setup_reader, psi.ServerSetup, "setup")
            _check_setup(setup_reader, message)
            setups.append(message)
        setup_reader.end()

        reader = _Reader(response, _KIND_RESPONSE, self.party)
        num_batches = reader.count(8)
        if num_batches != len(self._batch_sizes):
            reader.fail(f"it has {num_batches} batches, the request had {len(self._batch_sizes)}")
        responses = []
        for expected in self._batch_sizes:
            message = _parse_proto(reader, psi.Response, "response")
            if len(message.encrypted_elements) != expected:
                reader.fail("a batch holds a different number of elements than its request")
            _check_points(reader, message.encrypted_elements, "response")
            responses.append(message)
        reader.end()

        found = np.zeros(self.num_elements, dtype=bool)
        # Progress counts this party's IDs, each batch once it is checked against every server
        # batch (not batches x setups, which would overstate the IDs).
        progress = _Progress(self.on_progress, self.num_elements)
        offset = 0
        for size, response_message in zip(self._batch_sizes, responses, strict=True):
            for setup_message in setups:
                hits = _library_call(
                    self.party,
                    "intersection",
                    partial(self._psi.GetIntersection, setup_message, response_message),
                )
                hit_array = np.asarray(hits, dtype=np.int64)
                if hit_array.size and (hit_array.min() < 0 or hit_array.max() >= size):
                    raise ProtocolError(f"party {self.party!r}: PSI returned an invalid index")
                found[offset + hit_array] = True
            offset += size
            progress.advance(size)
        shared = [self._ids.ids[i] for i in np.flatnonzero(found)]
        self._order = _agreed_order(shared, self.seed)
        return np.sort(self._ids.rows[found])

    def _require_order(self) -> list[str]:
        if self._order is None:
            raise ProtocolError(f"party {self.party!r}: PSI intersection is not computed yet")
        return self._order

    def aligned_rows(self) -> AlignedRows:
        """This party's rows in the agreed order (after :meth:`intersect`)."""
        order = self._require_order()
        rows = self._ids.rows_of(order)
        return AlignedRows(
            indices=rows,
            num_local=self._ids.num_rows,
            num_aligned=len(order),
            party=self.party,
            role="client",
        )

    def finish_message(self) -> bytes:
        """Tell the server the outcome: the count, plus the ordered IDs under ``BOTH``."""
        order = self._require_order()
        writer = _Writer(_KIND_FINISH)
        writer.u8(1 if self.reveal is RevealTo.BOTH else 0)
        writer.u64(len(order))
        if self.reveal is RevealTo.BOTH:
            for text in order:
                writer.blob(text.encode("utf-8"))
        return writer.getvalue()


def _secure_permutation(size: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(secrets.randbits(128))
    return rng.permutation(size).astype(np.int64)


# --------------------------------------------------------------------------- conveniences


def alignment_report(*sides: AlignedRows) -> dict[str, Any]:
    """Summarize an alignment: rows each party had and how many were aligned.

    Raises :class:`~fedsilo.errors.ProtocolError` if the parties disagree on the
    number of aligned customers.
    """
    if not sides:
        raise ValueError("alignment_report needs at least one AlignedRows")
    counts = {side.num_aligned for side in sides}
    if len(counts) != 1:
        raise ProtocolError(
            f"parties disagree on the number of aligned customers: {sorted(counts)}"
        )
    num_aligned = counts.pop()
    parties: dict[str, dict[str, Any]] = {}
    for position, side in enumerate(sides):
        name = side.party or f"party_{position}"
        parties[name] = {
            "role": side.role,
            "num_rows": side.num_local,
            "num_aligned": side.num_aligned,
            "fraction_aligned": side.num_aligned / side.num_local if side.num_local else 0.0,
            "knows_rows": not side.blind,
        }
    return {"num_aligned": num_aligned, "parties": parties}


def align_in_process(
    client_ids: Iterable[object],
    server_ids: Iterable[object],
    *,
    reveal: RevealTo = RevealTo.BOTH,
    client_party: str = "client",
    server_party: str = "server",
    client_column: str = "id",
    server_column: str = "id",
    fpr: float | None = None,
    data_structure: PsiDataStructure = PsiDataStructure.GCS,
    normalization: IdNormalization | None = None,
    duplicates: DuplicatePolicy = DuplicatePolicy.REJECT,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | bytes | str | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[AlignedRows, AlignedRows]:
    """Run the real byte-level protocol in one process; returns (client, server) rows.

    For simulations and tests. ``on_progress`` is shared by both roles and is
    called once per batch of every step.
    """
    client = PsiClient(
        client_ids,
        party=client_party,
        column=client_column,
        reveal=reveal,
        seed=seed,
        normalization=normalization,
        duplicates=duplicates,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    server = PsiServer(
        server_ids,
        party=server_party,
        column=server_column,
        reveal=reveal,
        fpr=fpr,
        data_structure=data_structure,
        normalization=normalization,
        duplicates=duplicates,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    request = client.request()
    setup = server.setup_message(client.num_elements)
    response = server.respond(request)
    client.intersect(setup, response)
    server_rows = server.finish(client.finish_message())
    return client.aligned_rows(), server_rows
