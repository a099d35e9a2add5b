"""CKKS backend (``tenseal`` over Microsoft SEAL): fast, approximate, packed vectors.

Packing. A vector of ``n`` reals is split into ``ceil(n / slots)`` ciphertexts
(``slots = poly_modulus_degree / 2``, 4096 by default), each zero-padded to the
full slot count; the true length is tracked alongside. Chunking is transparent
to ``+``, ``add_plain``, ``mul_plain``, ``sum`` and ``matmul_plain``.

``matmul_plain``. For ``Enc(v) @ M`` with ``M`` of shape ``(n, d)`` each output
column ``j`` is ``sum(Enc(v) * M[:, j])``: one plaintext multiplication per chunk
and column, chunk products added, then one rotate-and-add sum (log2(slots)
rotations, using the Galois keys shipped in the public context). The result is
``d`` ciphertexts holding one value each. TenSEAL's own vector-matrix product
(``CKKSVector.matmul``) packs the result but needs O(n) rotations (measured:
18.7 s for 4096 x 20), and re-packing the sums would cost a second
multiplicative level; one ciphertext per output column keeps depth 1 and takes
0.37 s for 10k x 20 on a 2-core machine. The trade-off is size on the wire
(~0.24 MB per output value at the default parameters, 4.7 MB for d = 20).

Precision. Measured with the default parameters (``N = 8192``, primes ``[60,
40, 40, 60]``, scale ``2**40``), values and matrix entries uniform in ``[-10,
10]``, max absolute error over the vector:

==================  =========  =========  =========
operation           n = 12     n = 1000   n = 10000
==================  =========  =========  =========
encrypt / ``+``     5e-9       7e-9       1.2e-8
``add_plain``       5e-9       6e-9       1e-8
``mul_plain``       1.1e-5     1.3e-5     1.3e-5
``sum``             1.5e-6     1.8e-6     1.6e-6
``matmul_plain``    2.5e-5     2.1e-4     6e-4
mul then matmul     9e-4       8e-3       2.4e-2
==================  =========  =========  =========

(relative to the results' magnitudes, ~1e-7 or better). The tests assert 1e-3
absolute for single operations on short vectors in ``[-10, 10]``. Each
``mul_plain`` or ``matmul_plain`` consumes one level; the default chain allows
two (``CkksConfig.depth``). Running out raises
:class:`~fedsilo.errors.ConfigError`.

Security notes. The public context (public, relinearization and Galois keys;
~35 MB at the defaults) carries no secret key; loading one that does is
refused. CKKS gives no circuit privacy and decrypted values carry noise that
depends on the secret key: only reveal decryptions of masked values, as the
vertical protocols do.
"""

from __future__ import annotations

import functools
import operator
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import tenseal as ts
import tenseal.sealapi as sa

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.privacy.he.base import (
    CkksConfig,
    EncryptedVector,
    FloatArray,
    HeScheme,
    PayloadKind,
    PublicContext,
    SecretContext,
    as_matrix,
    as_vector,
    check_same_key,
    fingerprint_of,
    pack_header,
    unpack_header,
)

_CTX_PARAMS = struct.Struct(">IBB")  # poly_modulus_degree, global_scale_bits, number of primes
_CTX_LEN = struct.Struct(">Q")
_VEC_BODY = struct.Struct(">I")  # number of chunks
_CHUNK = struct.Struct(">II")  # values used in the chunk, byte length of the chunk
_MAX_PUBLIC_CONTEXT_BYTES: Final = 1 << 31

_T = TypeVar("_T")


@dataclass(frozen=True)
class SealTools:
    """SEAL objects behind a CKKS context: ``evaluator``, ``encoder``, ``galois_keys``."""

    evaluator: Any
    encoder: Any
    galois_keys: Any


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _evaluate(what: str, fn: Callable[[], _T]) -> _T:
    """Run a TenSEAL operation, translating its errors into fedsilo's."""
    try:
        return fn()
    except (ValueError, RuntimeError, TypeError) as exc:
        if "scale out of bounds" in str(exc) or "end of modulus switching chain" in str(exc):
            raise ConfigError(
                f"CKKS {what}: the ciphertext has no multiplicative level left; each mul_plain "
                "or matmul_plain uses one. Add 40-bit primes to CkksConfig.coeff_mod_bit_sizes "
                "(and raise poly_modulus_degree if the total exceeds its limit)."
            ) from exc
        raise ProtocolError(f"CKKS {what} failed: {exc}") from exc


class CkksVector(EncryptedVector):
    """A list of TenSEAL ``CKKSVector`` chunks; chunk ``k`` holds ``used[k]`` leading values."""

    __slots__ = ("_chunks", "_ctx", "_used")

    def __init__(self, ctx: CkksPublicContext, chunks: list[Any], used: list[int]) -> None:
        self._ctx = ctx
        self._chunks = chunks
        self._used = used

    @property
    def scheme(self) -> HeScheme:
        return HeScheme.CKKS

    @property
    def fingerprint(self) -> bytes:
        return self._ctx.fingerprint

    @property
    def chunks(self) -> list[Any]:
        """The underlying TenSEAL ``CKKSVector`` objects (read-only use)."""
        return self._chunks

    @property
    def layout(self) -> tuple[tuple[int, int], ...]:
        """``(slots in chunk, values used)`` per chunk."""
        return tuple((int(c.size()), u) for c, u in zip(self._chunks, self._used, strict=True))

    @property
    def used(self) -> list[int]:
        return list(self._used)

    def __len__(self) -> int:
        return sum(self._used)

    def __repr__(self) -> str:
        return f"CkksVector(len={len(self)}, ciphertexts={len(self._chunks)})"

    def _plain_blocks(self, arr: FloatArray) -> list[list[float]]:
        """Split ``arr`` by this vector's layout, zero-padding each block to its chunk."""
        blocks: list[list[float]] = []
        start = 0
        for size, used in self.layout:
            block = np.zeros(size, dtype=np.float64)
            block[:used] = arr[start : start + used]
            blocks.append(block.tolist())
            start += used
        return blocks

    def __add__(self, other: EncryptedVector) -> CkksVector:
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        check_same_key(self, other)
        assert isinstance(other, CkksVector)
        if self.layout != other.layout:
            raise ProtocolError(
                "cannot add CKKS vectors packed differently (e.g. a matmul_plain result, one "
                "ciphertext per value, and a freshly encrypted vector); decrypt-free re-packing "
                "is not supported"
            )
        chunks = _evaluate(
            "add", lambda: [a + b for a, b in zip(self._chunks, other._chunks, strict=True)]
        )
        return CkksVector(self._ctx, chunks, list(self._used))

    def add_plain(self, values: npt.ArrayLike) -> CkksVector:
        blocks = self._plain_blocks(as_vector(values, "add_plain operand", len(self)))
        chunks = _evaluate(
            "add_plain", lambda: [c + b for c, b in zip(self._chunks, blocks, strict=True)]
        )
        return CkksVector(self._ctx, chunks, list(self._used))

    def mul_plain(self, values: npt.ArrayLike) -> CkksVector:
        blocks = self._plain_blocks(as_vector(values, "mul_plain operand", len(self)))
        chunks = _evaluate(
            "mul_plain", lambda: [c * b for c, b in zip(self._chunks, blocks, strict=True)]
        )
        return CkksVector(self._ctx, chunks, list(self._used))

    def _grouped_sum(self, chunks: list[Any]) -> Any:
        """Add chunks of equal slot count, rotate-and-sum each group, add the groups."""
        groups: dict[int, list[Any]] = {}
        for chunk in chunks:
            groups.setdefault(int(chunk.size()), []).append(chunk)
        sums = [functools.reduce(operator.add, group).sum() for group in groups.values()]
        return functools.reduce(operator.add, sums)

    def sum(self) -> CkksVector:
        total = _evaluate("sum", lambda: self._grouped_sum(self._chunks))
        return CkksVector(self._ctx, [total], [1])

    def matmul_plain(self, matrix: npt.ArrayLike) -> CkksVector:
        mat = as_matrix(matrix, len(self), "matmul_plain matrix")
        columns = [self._plain_blocks(mat[:, j]) for j in range(mat.shape[1])]

        def run() -> list[Any]:
            return [
                self._grouped_sum([c * b for c, b in zip(self._chunks, blocks, strict=True)])
                for blocks in columns
            ]

        chunks = _evaluate("matmul_plain", run)
        return CkksVector(self._ctx, chunks, [1] * len(chunks))


class CkksPublicContext(PublicContext):
    """A TenSEAL CKKS context holding public, relinearization and Galois keys only."""

    def __init__(self, ts_context: Any, config: CkksConfig, public_bytes: bytes) -> None:
        self._ts = ts_context
        self._config = config
        self._public_bytes = public_bytes
        self._fingerprint = fingerprint_of(HeScheme.CKKS, public_bytes)
        self._tools: SealTools | None = None

    @property
    def scheme(self) -> HeScheme:
        return HeScheme.CKKS

    @property
    def fingerprint(self) -> bytes:
        return self._fingerprint

    @property
    def config(self) -> CkksConfig:
        return self._config

    @property
    def slot_count(self) -> int:
        """Values per ciphertext."""
        return self._config.slot_count

    def encrypt(self, values: npt.ArrayLike) -> CkksVector:
        arr = as_vector(values, "encrypt input")
        slots = self.slot_count
        chunks: list[Any] = []
        used: list[int] = []
        for start in range(0, arr.shape[0], slots):
            block = np.zeros(slots, dtype=np.float64)
            part = arr[start : start + slots]
            block[: part.shape[0]] = part
            chunks.append(
                _evaluate("encrypt", functools.partial(ts.ckks_vector, self._ts, block.tolist()))
            )
            used.append(int(part.shape[0]))
        return CkksVector(self, chunks, used)

    def seal_tools(self) -> SealTools:
        """SEAL evaluator, encoder and Galois keys of this context (for slot-level kernels)."""
        if self._tools is None:
            seal_ctx = self._ts.seal_context().data
            self._tools = SealTools(
                sa.Evaluator(seal_ctx), sa.CKKSEncoder(seal_ctx), self._ts.galois_keys().data
            )
        return self._tools

    def vector_from_seal(self, ciphertexts: list[Any]) -> CkksVector:
        """Wrap SEAL ciphertexts (full slot count each) as a :class:`CkksVector`."""
        chunks = []
        slots = self.slot_count
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ct")
            for ct in ciphertexts:
                ct.save(path)  # SEAL serializes to a path only
                with open(path, "rb") as fh:
                    raw = fh.read()
                # TenSEAL's CKKSVectorProto: sizes (1, packed), ciphertexts (2), scale (3)
                proto = b"".join(
                    (
                        b"\x0a" + _varint(len(_varint(slots))) + _varint(slots),
                        b"\x12" + _varint(len(raw)) + raw,
                        b"\x19" + struct.pack("<d", ct.scale),
                    )
                )
                chunks.append(
                    _evaluate("wrap", functools.partial(ts.ckks_vector_from, self._ts, proto))
                )
        return CkksVector(self, chunks, [slots] * len(chunks))

    def serialize_vector(self, vector: EncryptedVector) -> bytes:
        if not isinstance(vector, CkksVector) or vector.fingerprint != self._fingerprint:
            raise ProtocolError("serialize_vector: the vector was not encrypted under this key")
        parts = [
            pack_header(HeScheme.CKKS, PayloadKind.VECTOR, self._fingerprint),
            _VEC_BODY.pack(len(vector.chunks)),
        ]
        for chunk, used in zip(vector.chunks, vector.used, strict=True):
            data = chunk.serialize()
            parts.append(_CHUNK.pack(used, len(data)))
            parts.append(data)
        return b"".join(parts)

    def deserialize_vector(self, data: bytes) -> CkksVector:
        fp, body = unpack_header(data, HeScheme.CKKS, PayloadKind.VECTOR, "CKKS vector")
        if fp != self._fingerprint:
            raise ProtocolError(
                "CKKS vector: it was encrypted under a different key than this context's"
            )
        if len(body) < _VEC_BODY.size:
            raise ProtocolError("CKKS vector: truncated before its chunk count")
        (count,) = _VEC_BODY.unpack_from(body)
        offset = _VEC_BODY.size
        if count == 0:
            raise ProtocolError("CKKS vector: holds no ciphertexts")
        chunks: list[Any] = []
        used: list[int] = []
        slots = self.slot_count
        for k in range(count):
            if len(body) - offset < _CHUNK.size:
                raise ProtocolError(f"CKKS vector: truncated at chunk {k} of {count}")
            n_used, length = _CHUNK.unpack_from(body, offset)
            offset += _CHUNK.size
            if length == 0 or len(body) - offset < length:
                raise ProtocolError(f"CKKS vector: chunk {k} is truncated or empty")
            raw = bytes(body[offset : offset + length])
            offset += length
            try:
                chunk = ts.ckks_vector_from(self._ts, raw)
                size = int(chunk.size())
            except Exception as exc:  # TenSEAL raises assorted types on malformed input
                raise ProtocolError(
                    f"CKKS vector: chunk {k} is not a valid ciphertext ({exc})"
                ) from exc
            if not 1 <= n_used <= size <= slots or len(chunk.ciphertext()) != 1:
                raise ProtocolError(
                    f"CKKS vector: chunk {k} claims {n_used} values in a ciphertext of {size} "
                    f"slots (at most {slots})"
                )
            chunks.append(chunk)
            used.append(n_used)
        if offset != len(body):
            raise ProtocolError(f"CKKS vector: {len(body) - offset} trailing bytes")
        return CkksVector(self, chunks, used)

    def to_bytes(self) -> bytes:
        cfg = self._config
        return b"".join(
            (
                pack_header(HeScheme.CKKS, PayloadKind.PUBLIC_CONTEXT, self._fingerprint),
                _CTX_PARAMS.pack(
                    cfg.poly_modulus_degree, cfg.global_scale_bits, len(cfg.coeff_mod_bit_sizes)
                ),
                bytes(cfg.coeff_mod_bit_sizes),
                _CTX_LEN.pack(len(self._public_bytes)),
                self._public_bytes,
            )
        )


class CkksSecretContext(CkksPublicContext, SecretContext):
    """A CKKS context that also holds the secret key."""

    def __init__(self, ts_context: Any, config: CkksConfig, public_bytes: bytes) -> None:
        super().__init__(ts_context, config, public_bytes)
        self._secret_key = ts_context.secret_key()
        self._public: CkksPublicContext | None = None

    def public(self) -> CkksPublicContext:
        if self._public is None:
            self._public = load_ckks_public(self.to_bytes())
        return self._public

    def decrypt(self, vector: EncryptedVector) -> FloatArray:
        if not isinstance(vector, CkksVector) or vector.fingerprint != self._fingerprint:
            raise ProtocolError("decrypt: the vector was not encrypted under this key")
        parts: list[FloatArray] = []
        for chunk, used in zip(vector.chunks, vector.used, strict=True):
            values = _evaluate("decrypt", functools.partial(chunk.decrypt, self._secret_key))
            parts.append(np.asarray(values, dtype=np.float64)[:used])
        return np.concatenate(parts)


def _serialize_public(ts_context: Any) -> bytes:
    data = ts_context.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=True, save_relin_keys=True
    )
    return bytes(data)


def generate_ckks(config: CkksConfig) -> CkksSecretContext:
    """Create a CKKS key set (secret, public, relinearization and Galois keys)."""
    try:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=config.poly_modulus_degree,
            coeff_mod_bit_sizes=list(config.coeff_mod_bit_sizes),
        )
        ctx.global_scale = float(2**config.global_scale_bits)
        ctx.generate_galois_keys()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"TenSEAL rejected the CKKS parameters {config}: {exc}") from exc
    return CkksSecretContext(ctx, config, _serialize_public(ctx))


def load_ckks_public(data: bytes) -> CkksPublicContext:
    """Rebuild a public context from :meth:`CkksPublicContext.to_bytes`."""
    what = "CKKS public context"
    fp, body = unpack_header(data, HeScheme.CKKS, PayloadKind.PUBLIC_CONTEXT, what)
    if len(body) < _CTX_PARAMS.size:
        raise ProtocolError(f"{what}: truncated before its parameters")
    degree, scale_bits, n_primes = _CTX_PARAMS.unpack_from(body)
    offset = _CTX_PARAMS.size
    if len(body) < offset + n_primes + _CTX_LEN.size:
        raise ProtocolError(f"{what}: truncated inside its parameters")
    primes = tuple(body[offset : offset + n_primes])
    offset += n_primes
    (length,) = _CTX_LEN.unpack_from(body, offset)
    offset += _CTX_LEN.size
    if length > _MAX_PUBLIC_CONTEXT_BYTES or len(body) - offset != length:
        raise ProtocolError(
            f"{what}: announced {length} bytes of keys, found {len(body) - offset}; truncated "
            "or corrupted"
        )
    try:
        config = CkksConfig(
            poly_modulus_degree=degree, coeff_mod_bit_sizes=primes, global_scale_bits=scale_bits
        )
    except ConfigError as exc:
        raise ProtocolError(f"{what}: invalid parameters ({exc})") from exc
    public_bytes = bytes(body[offset:])
    if fingerprint_of(HeScheme.CKKS, public_bytes) != fp:
        raise ProtocolError(f"{what}: fingerprint mismatch (corrupted key bytes)")
    try:
        ctx = ts.context_from(public_bytes)
        private = bool(ctx.is_private())
        galois = bool(ctx.has_galois_keys())
        probe = ts.ckks_vector(ctx, [0.0]).ciphertext()[0]
        probe_degree = int(probe.poly_modulus_degree())
        probe_primes = int(probe.coeff_modulus_size())
    except Exception as exc:  # TenSEAL raises assorted types on malformed input
        raise ProtocolError(f"{what}: the key material does not load ({exc})") from exc
    if private:
        raise ProtocolError(
            f"{what}: it contains a secret key; only public contexts may be shared "
            "(use SecretContext.public().to_bytes())"
        )
    if not galois:
        raise ProtocolError(f"{what}: Galois keys are missing (needed for sum and matmul_plain)")
    if probe_degree != degree or probe_primes != n_primes - 1:
        raise ProtocolError(f"{what}: the key material does not match its declared parameters")
    ctx.global_scale = float(2**scale_bits)
    return CkksPublicContext(ctx, config, public_bytes)
