"""Encrypted gradient statistics: how g and h are packed and how hosts sum them per bin.

Paillier (exact). Each row's ``(g, h)`` becomes ONE plaintext integer::

    P = round(g * 2**40) * 2**72 + round(h * 2**40)

``h = p(1-p)`` is in ``[0, 1/4]``, so a sum of up to ``2**34`` rows keeps the ``h`` field below
``2**72`` and never carries into the ``g`` field; ``g`` may be negative (a signed sum of a
nonnegative low field decodes exactly: ``H = V mod 2**72``, ``G = V >> 72``). One ciphertext per
row instead of two halves the guest's encryptions and the hosts' work. The guest encrypts the
packed vector once per tree; a host's bin sum is the product of the row ciphertexts mod ``n**2``
(homomorphic addition, no scalar multiplications), re-randomized when serialized so the guest
cannot tell which of its ciphertexts went into a bin.

CKKS (approximate). Slots replace bit fields: per node the guest encrypts the node's rows as
``[g_1 .. g_m | h_1 .. h_m]`` (chunks of at most 512 rows) and a host multiplies it by the
block matrix ``[[M, 0], [0, M]]`` (``M`` = its 0/1 row-to-(feature, bin) membership) with
TenSEAL's vector-matrix product, which leaves ``[G bins | H bins]`` in one ciphertext per chunk;
chunks are added under encryption. Per-node encryption keeps the work proportional to the
node's rows (the product's cost grows with the vector length, not the number of bins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import gmpy2
import numpy as np
import numpy.typing as npt
import tenseal as ts
from phe import paillier

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import HeScheme, PublicContext, SecretContext
from fedsilo.privacy.he.ckks import CkksPublicContext, CkksVector
from fedsilo.privacy.he.paillier import (
    PaillierPublicContext,
    PaillierSecretContext,
    PaillierVector,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FRAC_BITS: Final = 40
CKKS_CHUNK_ROWS: Final = 512


# ------------------------------------------------------------------------------ Paillier


@dataclass(frozen=True)
class PaillierLayout:
    """Bit fields of the packed Paillier plaintexts for ``n_rows`` training rows.

    A row is ``g * 2**h_bits + h`` (fixed point, FRAC_BITS fractional bits); a bin sum
    ``G * 2**h_bits + H`` is a signed integer of fewer than ``slot_bits - 1`` bits (logistic
    loss: ``|g| <= 1``, ``0 <= h <= 1/4``), so ``per_ciphertext`` bin sums fit side by side in one
    plaintext below ``n/2`` without overflowing into each other.
    """

    h_bits: int
    slot_bits: int
    per_ciphertext: int


def paillier_layout(n_rows: int, key_bits: int) -> PaillierLayout:
    one = 1 << FRAC_BITS
    h_bits = (n_rows * (one // 4 + 1)).bit_length() + 1  # sum of h < 2**h_bits
    g_bits = (n_rows * (one + 1)).bit_length()  # |sum of g| < 2**g_bits
    slot_bits = h_bits + g_bits + 2  # |G * 2**h_bits + H| < 2**(slot_bits - 1)
    per = (key_bits - 2) // slot_bits
    if per < 1:
        raise ProtocolError(f"a {key_bits}-bit Paillier key cannot hold a {slot_bits}-bit bin sum")
    return PaillierLayout(h_bits, slot_bits, per)


def paillier_encrypt_packed(public: PublicContext, g: FloatArray, h: FloatArray) -> bytes:
    """One ciphertext per row holding both ``g`` and ``h`` (see the module docstring)."""
    if not isinstance(public, PaillierPublicContext):
        raise ProtocolError("packed Paillier encryption needs a Paillier context")
    if np.any(h < 0) or np.any(h > 0.25 + 1e-12) or np.any(np.abs(g) > 1.0):
        raise ProtocolError("gradient packing needs logistic-loss bounds |g| <= 1, 0 <= h <= 1/4")
    layout = paillier_layout(len(g), public.key_bits)
    pk = public.public_key
    n = pk.n
    gi = np.rint(np.ldexp(g, FRAC_BITS)).astype(np.int64).tolist()
    hi = np.rint(np.ldexp(h, FRAC_BITS)).astype(np.int64).tolist()
    items = [
        pk.encrypt_encoded(paillier.EncodedNumber(pk, ((a << layout.h_bits) + b) % n, 0), None)
        for a, b in zip(gi, hi, strict=True)
    ]
    return public.serialize_vector(PaillierVector(public, items, 0))


def paillier_bin_sums(
    public: PublicContext,
    packed: bytes | PaillierVector,
    codes: npt.NDArray[np.int32],
    rows: IntArray,
    n_bins: int,
) -> bytes:
    """Per-(feature, bin) sums of the packed rows ``rows``, ``per_ciphertext`` to a ciphertext.

    Bin sums are products of row ciphertexts mod ``n**2`` (gmpy2 on phe's raw ciphertexts);
    bin ``j`` of a group goes to slot ``j % per`` by Horner's rule ``c = c**(2**slot_bits) * c_j``
    (a plaintext shift by ``slot_bits``); only the packed ciphertexts are re-randomized (phe's
    obfuscation in ``serialize_vector``), so the guest still cannot relate them to its own.
    """
    if not isinstance(public, PaillierPublicContext):
        raise ProtocolError("Paillier bin sums need a Paillier context")
    vec = packed if isinstance(packed, PaillierVector) else public.deserialize_vector(packed)
    if vec.exponent != 0:
        raise ProtocolError("packed gradients must carry exponent 0")
    if rows.size and (rows.min() < 0 or rows.max() >= len(vec)):
        raise ProtocolError(f"node rows out of range for {len(vec)} encrypted rows")
    layout = paillier_layout(len(vec), public.key_bits)
    nsq = gmpy2.mpz(public.public_key.nsquare)
    cts = [gmpy2.mpz(c.ciphertext(be_secure=False)) for c in vec.items]
    n_feat = codes.shape[1]
    acc: list[Any] = [gmpy2.mpz(1)] * (n_feat * n_bins)  # 1 is the trivial encryption of 0
    sub = codes[rows] + (np.arange(n_feat, dtype=np.int32) * n_bins)[None, :]
    for r, slots in zip(rows.tolist(), sub.tolist(), strict=True):
        c = cts[r]
        for s in slots:
            acc[s] = acc[s] * c % nsq
    shift = gmpy2.mpz(1) << layout.slot_bits
    per = layout.per_ciphertext
    pk = public.public_key
    out = []
    for start in range(0, len(acc), per):
        group = acc[start : start + per]
        c = group[-1]
        for a in reversed(group[:-1]):
            c = gmpy2.powmod(c, shift, nsq) * a % nsq
        out.append(paillier.EncryptedNumber(pk, int(c), 0))
    # serialize_vector re-randomizes every (non-fresh) ciphertext: one per packed group
    return public.serialize_vector(PaillierVector(public, out, 0))


def paillier_decode(
    secret: SecretContext, blob: bytes, n_values: int, n_rows: int
) -> tuple[FloatArray, FloatArray]:
    if not isinstance(secret, PaillierSecretContext):
        raise ProtocolError("expected a Paillier key")
    vec = secret.deserialize_vector(blob)
    layout = paillier_layout(n_rows, secret.key_bits)
    per, w = layout.per_ciphertext, layout.slot_bits
    if vec.exponent != 0 or len(vec) != -(-n_values // per):
        raise ProtocolError(
            f"expected {n_values} packed Paillier bin sums in {-(-n_values // per)} ciphertexts"
        )
    values: list[int] = []
    low, half = (1 << w) - 1, 1 << (w - 1)
    for total in secret.decrypt_integers(vec):
        for _ in range(min(per, n_values - len(values))):
            v = total & low
            if v >= half:
                v -= 1 << w
            values.append(v)
            total = (total - v) >> w
        if total:
            raise ProtocolError("packed Paillier bin sums overflowed their slots")
    hmask = (1 << layout.h_bits) - 1
    scale = 2.0**-FRAC_BITS
    g = np.array([(v >> layout.h_bits) for v in values], dtype=np.float64) * scale
    h = np.array([(v & hmask) for v in values], dtype=np.float64) * scale
    return g, h


# ---------------------------------------------------------------------------------- CKKS


def ckks_encrypt_node(public: PublicContext, g: FloatArray, h: FloatArray) -> list[bytes]:
    """A node's rows as ``[g | h]`` vectors of at most CKKS_CHUNK_ROWS rows each."""
    if not isinstance(public, CkksPublicContext):
        raise ProtocolError("CKKS node encryption needs a CKKS context")
    out = []
    for start in range(0, len(g), CKKS_CHUNK_ROWS):
        part = slice(start, start + CKKS_CHUNK_ROWS)
        values = np.concatenate([g[part], h[part]])
        # exactly 2m slots (not padded to the ring size): the product's cost grows with them
        chunk = ts.ckks_vector(public._ts, values.tolist())
        out.append(public.serialize_vector(CkksVector(public, [chunk], [len(values)])))
    return out


def ckks_bin_sums(
    public: PublicContext,
    chunks: list[bytes],
    codes: npt.NDArray[np.int32],
    rows: IntArray,
    n_bins: int,
) -> bytes:
    """Encrypted ``[G bins | H bins]`` of the node (one ciphertext)."""
    if not isinstance(public, CkksPublicContext):
        raise ProtocolError("CKKS bin sums need a CKKS context")
    n_feat = codes.shape[1]
    d = n_feat * n_bins
    total: Any = None
    start = 0
    for blob in chunks:
        vec = public.deserialize_vector(blob)
        if not isinstance(vec, CkksVector) or len(vec.chunks) != 1 or len(vec) % 2:
            raise ProtocolError("CKKS node gradients must be one [g | h] ciphertext per chunk")
        m = len(vec) // 2
        part = rows[start : start + m]
        if len(part) != m:
            raise ProtocolError("CKKS node gradients do not match the node's rows")
        start += m
        onehot = np.zeros((m, d))
        cols = codes[part] + (np.arange(n_feat) * n_bins)[None, :]
        onehot[np.repeat(np.arange(m), n_feat), cols.ravel()] = 1.0
        block = np.zeros((2 * m, 2 * d))
        block[:m, :d] = onehot
        block[m:, d:] = onehot
        prod = vec.chunks[0].mm(block.tolist())
        total = prod if total is None else total + prod
    if start != len(rows) or total is None:
        raise ProtocolError("CKKS node gradients do not cover the node's rows")
    return public.serialize_vector(CkksVector(public, [total], [2 * d]))


def ckks_decode(secret: SecretContext, blob: bytes) -> tuple[FloatArray, FloatArray]:
    vals = secret.decrypt(secret.deserialize_vector(blob))
    d = len(vals) // 2
    return vals[:d], vals[d:]


def decode_bin_sums(
    secret: SecretContext, blob: bytes, n_features: int, n_bins: int, n_rows: int
) -> tuple[FloatArray, FloatArray]:
    """Decrypt a host's bin sums to ``(G, H)`` of shape ``(n_features, n_bins)``.

    ``n_rows``: training rows of the tree (fixes the Paillier slot layout).
    """
    if secret.scheme is HeScheme.PAILLIER:
        g, h = paillier_decode(secret, blob, n_features * n_bins, n_rows)
    else:
        g, h = ckks_decode(secret, blob)
    if g.size != n_features * n_bins:
        raise ProtocolError(
            f"bin sums hold {g.size} values, expected {n_features} features x {n_bins} bins"
        )
    return g.reshape(n_features, n_bins), h.reshape(n_features, n_bins)
