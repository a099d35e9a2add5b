"""The backend-neutral interface of fedsilo's homomorphic-encryption layer.

Two schemes sit behind one interface:

* **Paillier** (:mod:`fedsilo.privacy.he.paillier`, via ``phe``): additively
  homomorphic, *exact* fixed-point arithmetic. One ciphertext per value.
* **CKKS** (:mod:`fedsilo.privacy.he.ckks`, via ``tenseal``): approximate
  arithmetic on packed vectors (thousands of values per ciphertext), much
  faster for long vectors, with a small approximation error and a bounded
  number of plaintext multiplications (the *multiplicative depth*).

Roles. The party that generates keys holds a :class:`SecretContext` (it can
decrypt). It hands out :meth:`SecretContext.public` -- or its bytes,
:meth:`PublicContext.to_bytes` -- to everyone else. A :class:`PublicContext` can
encrypt, evaluate (``+``, :meth:`~EncryptedVector.add_plain`,
:meth:`~EncryptedVector.mul_plain`, :meth:`~EncryptedVector.sum`,
:meth:`~EncryptedVector.matmul_plain`) and (de)serialize ciphertexts, but it has
no ``decrypt`` method and carries no secret material.

Wire format. Every byte string produced here starts with a 23-byte header::

    b"FSHE" | version (u8) | scheme (u8) | kind (u8) | key fingerprint (16 bytes)

followed by a backend-specific body. Loaders check the header, the fingerprint
(the key a vector was encrypted under must be the key of the context loading
it) and every length, and raise :class:`~fedsilo.errors.ProtocolError` on any
mismatch -- never a crash, a hang or an unbounded allocation. Nothing is
pickled.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ConfigError, ProtocolError

FloatArray = npt.NDArray[np.float64]

MAGIC: Final = b"FSHE"
WIRE_VERSION: Final = 1
FINGERPRINT_BYTES: Final = 16
_HEADER = struct.Struct(f">4sBBB{FINGERPRINT_BYTES}s")
HEADER_BYTES: Final = _HEADER.size


class HeScheme(enum.Enum):
    """The homomorphic-encryption schemes fedsilo supports."""

    PAILLIER = "paillier"
    CKKS = "ckks"


_SCHEME_CODES: Final = {HeScheme.PAILLIER: 1, HeScheme.CKKS: 2}
_CODE_SCHEMES: Final = {code: scheme for scheme, code in _SCHEME_CODES.items()}


class PayloadKind(enum.IntEnum):
    """What a serialized byte string holds."""

    PUBLIC_CONTEXT = 1
    VECTOR = 2


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class PaillierConfig:
    """Parameters of a Paillier key and of its fixed-point encoding.

    Attributes:
        key_bits: bit length of the modulus ``n``. 2048 (default) is the usual
            minimum for real use; 1024 is accepted for tests only.
        precision_exponent: base-16 exponent ``E`` of the fixed-point encoding.
            Every encrypted value and every plaintext operand is rounded to the
            nearest multiple of ``16**E`` (default ``E = -13``: ``2**-52``,
            about ``2.2e-16``), so all ciphertexts of a context share the same
            exponent and can be summed without re-scaling. Products carry
            exponent ``2E`` (``mul_plain``/``matmul_plain``).
    """

    key_bits: int = 2048
    precision_exponent: int = -13

    def __post_init__(self) -> None:
        if not 1024 <= self.key_bits <= 8192 or self.key_bits % 8:
            raise ConfigError(
                f"PaillierConfig.key_bits={self.key_bits} is not supported: use a multiple of 8 "
                "between 1024 and 8192 (2048 or more outside tests)."
            )
        if not -64 <= self.precision_exponent <= 0:
            raise ConfigError(
                f"PaillierConfig.precision_exponent={self.precision_exponent} must be between "
                "-64 and 0 (values are rounded to multiples of 16**precision_exponent)."
            )


# Largest total coefficient-modulus size (bits) SEAL accepts at 128-bit security.
CKKS_MAX_COEFF_BITS: Final = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CkksConfig:
    """Parameters of a CKKS context (TenSEAL / Microsoft SEAL, 128-bit security).

    Attributes:
        poly_modulus_degree: ring dimension ``N``; one ciphertext packs ``N/2``
            values (4096 at the default 8192). Longer vectors are split into
            several ciphertexts transparently.
        coeff_mod_bit_sizes: bit sizes of the modulus chain. The first/last
            primes hold the integer part and the decryption precision, the
            middle ones are consumed one per plaintext multiplication, so the
            multiplicative depth is ``len(coeff_mod_bit_sizes) - 2``
            (default 2: one ``matmul_plain``, or two ``mul_plain``).
        global_scale_bits: encoding scale ``2**global_scale_bits``; should match
            the middle primes.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = field(default=(60, 40, 40, 60))
    global_scale_bits: int = 40

    def __post_init__(self) -> None:
        limit = CKKS_MAX_COEFF_BITS.get(self.poly_modulus_degree)
        if limit is None:
            raise ConfigError(
                f"CkksConfig.poly_modulus_degree={self.poly_modulus_degree} is not supported: "
                f"use one of {sorted(CKKS_MAX_COEFF_BITS)}."
            )
        sizes = tuple(self.coeff_mod_bit_sizes)
        if len(sizes) < 3 or any(not 20 <= b <= 60 for b in sizes):
            raise ConfigError(
                f"CkksConfig.coeff_mod_bit_sizes={sizes} must hold at least 3 primes of "
                "20..60 bits each (depth = number of primes - 2)."
            )
        if sum(sizes) > limit:
            raise ConfigError(
                f"CkksConfig.coeff_mod_bit_sizes={sizes} totals {sum(sizes)} bits; "
                f"poly_modulus_degree={self.poly_modulus_degree} allows at most {limit} "
                "for 128-bit security. Use fewer/smaller primes or a larger degree."
            )
        if not 20 <= self.global_scale_bits <= 60:
            raise ConfigError(
                f"CkksConfig.global_scale_bits={self.global_scale_bits} must be in 20..60."
            )

    @property
    def slot_count(self) -> int:
        """Number of values packed into one ciphertext."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Number of sequential plaintext multiplications a fresh ciphertext allows."""
        return len(self.coeff_mod_bit_sizes) - 2


# ------------------------------------------------------------------------- interface


class EncryptedVector(abc.ABC):
    """An opaque vector of encrypted reals, bound to the context that made it.

    All operations return new vectors; operands are never modified. Combining
    vectors of different keys, schemes or lengths raises
    :class:`~fedsilo.errors.ProtocolError`.
    """

    @property
    @abc.abstractmethod
    def scheme(self) -> HeScheme:
        """The scheme this vector is encrypted under."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> bytes:
        """Fingerprint of the public key this vector is encrypted under."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of encrypted values."""

    @abc.abstractmethod
    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        """Elementwise ``Enc(a) + Enc(b)``."""

    @abc.abstractmethod
    def add_plain(self, values: npt.ArrayLike) -> EncryptedVector:
        """Elementwise ``Enc(a) + b`` for a plaintext vector ``b`` of the same length."""

    @abc.abstractmethod
    def mul_plain(self, values: npt.ArrayLike) -> EncryptedVector:
        """Elementwise ``Enc(a) * b`` for a plaintext vector ``b`` of the same length."""

    @abc.abstractmethod
    def sum(self) -> EncryptedVector:
        """``Enc(sum(a))`` as a vector of length 1."""

    @abc.abstractmethod
    def matmul_plain(self, matrix: npt.ArrayLike) -> EncryptedVector:
        """``Enc(a) @ M`` for ``a`` of shape ``(n,)`` and plaintext ``M`` of shape ``(n, d)``.

        This is a host's ``X^T g``: encrypted per-row values times its plaintext
        feature matrix, giving ``d`` encrypted column sums.
        """


class PublicContext(abc.ABC):
    """Public key material: encrypt, evaluate and (de)serialize; cannot decrypt."""

    @property
    @abc.abstractmethod
    def scheme(self) -> HeScheme:
        """The scheme of this context."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> bytes:
        """A 16-byte digest of the public key, carried by every serialized vector."""

    @property
    def can_decrypt(self) -> bool:
        """Whether this context holds the secret key."""
        return False

    @abc.abstractmethod
    def encrypt(self, values: npt.ArrayLike) -> EncryptedVector:
        """Encrypt a non-empty 1-D array of finite reals."""

    @abc.abstractmethod
    def serialize_vector(self, vector: EncryptedVector) -> bytes:
        """Explicit bytes of ``vector`` (re-randomized where the scheme needs it)."""

    @abc.abstractmethod
    def deserialize_vector(self, data: bytes) -> EncryptedVector:
        """Load a vector serialized under this key; raise ProtocolError otherwise."""

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """Public material only: never contains the secret key."""


class SecretContext(PublicContext):
    """A context that additionally holds the secret key and can decrypt."""

    @property
    def can_decrypt(self) -> bool:
        return True

    @abc.abstractmethod
    def decrypt(self, vector: EncryptedVector) -> FloatArray:
        """Decrypt to a float64 array of ``len(vector)`` values."""

    @abc.abstractmethod
    def public(self) -> PublicContext:
        """The public half of this context (shares no secret material)."""


def require_secret(context: PublicContext) -> SecretContext:
    """Return ``context`` as a :class:`SecretContext` or explain why it cannot decrypt."""
    if isinstance(context, SecretContext):
        return context
    raise ProtocolError(
        f"this {context.scheme.value} context holds only the public key and cannot decrypt; "
        "only the key holder (the party that called fedsilo.privacy.he.generate) can."
    )


# --------------------------------------------------------------------------- helpers


def fingerprint_of(scheme: HeScheme, public_material: bytes) -> bytes:
    """Digest identifying a public key across parties."""
    return hashlib.sha256(scheme.value.encode() + b"\x00" + public_material).digest()[
        :FINGERPRINT_BYTES
    ]


def pack_header(scheme: HeScheme, kind: PayloadKind, fingerprint: bytes) -> bytes:
    """The common header of every serialized payload."""
    return _HEADER.pack(MAGIC, WIRE_VERSION, _SCHEME_CODES[scheme], int(kind), fingerprint)


def unpack_header(
    data: bytes, scheme: HeScheme, kind: PayloadKind, what: str
) -> tuple[bytes, memoryview]:
    """Check the header of ``data``; return (fingerprint, body)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what}: expected bytes, got {type(data).__name__}")
    view = memoryview(bytes(data))
    if len(view) < HEADER_BYTES:
        raise ProtocolError(
            f"{what}: {len(view)} bytes is too short for a fedsilo HE payload "
            f"(header alone is {HEADER_BYTES} bytes); the message is truncated or not HE data."
        )
    magic, version, scheme_code, kind_code, fingerprint = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(f"{what}: not a fedsilo HE payload (bad magic {bytes(magic)!r})")
    if version != WIRE_VERSION:
        raise ProtocolError(
            f"{what}: wire version {version} is not supported (this fedsilo speaks {WIRE_VERSION})"
        )
    got_scheme = _CODE_SCHEMES.get(scheme_code)
    if got_scheme is None:
        raise ProtocolError(f"{what}: unknown scheme code {scheme_code}")
    if got_scheme is not scheme:
        raise ProtocolError(
            f"{what}: payload is {got_scheme.value} but a {scheme.value} one was expected"
        )
    if kind_code != int(kind):
        raise ProtocolError(
            f"{what}: payload kind {kind_code} is not {kind.name.lower().replace('_', ' ')}"
        )
    return bytes(fingerprint), view[HEADER_BYTES:]


def as_vector(values: npt.ArrayLike, what: str, length: int | None = None) -> FloatArray:
    """Validate a plaintext operand: 1-D, finite, float64, optionally of ``length``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what}: cannot be read as real numbers ({exc})") from exc
    if arr.ndim != 1:
        raise ProtocolError(f"{what}: expected a 1-D vector, got shape {arr.shape}")
    if arr.size == 0:
        raise ProtocolError(f"{what}: empty vectors cannot be encrypted or combined")
    if length is not None and arr.shape[0] != length:
        raise ProtocolError(
            f"{what}: length {arr.shape[0]} does not match the encrypted vector's {length}"
        )
    if not np.all(np.isfinite(arr)):
        raise ProtocolError(f"{what}: contains NaN or infinite values")
    return arr


def as_matrix(matrix: npt.ArrayLike, rows: int, what: str) -> FloatArray:
    """Validate a plaintext matrix operand of shape ``(rows, d)``."""
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what}: cannot be read as real numbers ({exc})") from exc
    if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] == 0:
        raise ProtocolError(
            f"{what}: expected a matrix of shape ({rows}, d>=1) to match the encrypted "
            f"vector of length {rows}, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ProtocolError(f"{what}: contains NaN or infinite values")
    return arr


def check_same_key(a: EncryptedVector, b: EncryptedVector) -> None:
    """Refuse to combine vectors of different schemes, keys or lengths."""
    if a.scheme is not b.scheme:
        raise ProtocolError(
            f"cannot combine a {a.scheme.value} vector with a {b.scheme.value} vector"
        )
    if a.fingerprint != b.fingerprint:
        raise ProtocolError("cannot combine vectors encrypted under different keys")
    if len(a) != len(b):
        raise ProtocolError(f"cannot add encrypted vectors of lengths {len(a)} and {len(b)}")
