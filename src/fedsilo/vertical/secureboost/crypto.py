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

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tenseal as ts
from phe import paillier

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import HeScheme, PublicContext, SecretContext
from fedsilo.privacy.he.ckks import CkksPublicContext, CkksVector
from fedsilo.privacy.he.paillier import PaillierPublicContext, PaillierVector

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FRAC_BITS: Final = 40
H_FIELD_BITS: Final = 72
CKKS_CHUNK_ROWS: Final = 512


# ------------------------------------------------------------------------------ Paillier


def paillier_encrypt_packed(public: PublicContext, g: FloatArray, h: FloatArray) -> bytes:
    """One ciphertext per row holding both ``g`` and ``h`` (see the module docstring)."""
    if not isinstance(public, PaillierPublicContext):
        raise ProtocolError("packed Paillier encryption needs a Paillier context")
    if np.any(h < 0) or np.any(np.abs(g) > 2**20):
        raise ProtocolError("gradient packing needs h >= 0 and moderate |g|")
    pk = public.public_key
    n = pk.n
    gi = np.rint(np.ldexp(g, FRAC_BITS)).astype(np.int64).tolist()
    hi = np.rint(np.ldexp(h, FRAC_BITS)).astype(np.int64).tolist()
    items = [
        pk.encrypt_encoded(paillier.EncodedNumber(pk, ((a << H_FIELD_BITS) + b) % n, 0), None)
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
    """Encrypted per-(feature, bin) sums of the packed rows ``rows``: F*B ciphertexts."""
    if not isinstance(public, PaillierPublicContext):
        raise ProtocolError("Paillier bin sums need a Paillier context")
    vec = packed if isinstance(packed, PaillierVector) else public.deserialize_vector(packed)
    if vec.exponent != 0:
        raise ProtocolError("packed gradients must carry exponent 0")
    if rows.size and (rows.min() < 0 or rows.max() >= len(vec)):
        raise ProtocolError(f"node rows out of range for {len(vec)} encrypted rows")
    nsq = public.public_key.nsquare
    cts = [c.ciphertext(be_secure=False) for c in vec.items]
    n_feat = codes.shape[1]
    acc: list[Any] = [1] * (n_feat * n_bins)  # 1 is the trivial encryption of 0
    sub = codes[rows] + (np.arange(n_feat, dtype=np.int32) * n_bins)[None, :]
    for r, slots in zip(rows.tolist(), sub.tolist(), strict=True):
        c = cts[r]
        for s in slots:
            acc[s] = acc[s] * c % nsq
    pk = public.public_key
    out = [paillier.EncryptedNumber(pk, int(a), 0) for a in acc]
    # serialize_vector re-randomizes every (non-fresh) ciphertext
    return public.serialize_vector(PaillierVector(public, out, 0))


def paillier_decode(secret: SecretContext, blob: bytes) -> tuple[FloatArray, FloatArray]:
    vec = secret.deserialize_vector(blob)
    if not isinstance(vec, PaillierVector) or vec.exponent != 0:
        raise ProtocolError("expected packed Paillier bin sums")
    sk = secret._sk  # type: ignore[attr-defined]  # raw integer decryption of packed fields
    n = secret.public_key.n  # type: ignore[attr-defined]
    g = np.empty(len(vec))
    h = np.empty(len(vec))
    mask = (1 << H_FIELD_BITS) - 1
    for k, c in enumerate(vec.items):
        v = int(sk.decrypt_encoded(c).encoding)
        if v > n // 2:
            v -= n
        g[k] = (v >> H_FIELD_BITS) / 2.0**FRAC_BITS
        h[k] = (v & mask) / 2.0**FRAC_BITS
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
    secret: SecretContext, blob: bytes, n_features: int, n_bins: int
) -> tuple[FloatArray, FloatArray]:
    """Decrypt a host's bin sums to ``(G, H)`` of shape ``(n_features, n_bins)``."""
    if secret.scheme is HeScheme.PAILLIER:
        g, h = paillier_decode(secret, blob)
    else:
        g, h = ckks_decode(secret, blob)
    if g.size != n_features * n_bins:
        raise ProtocolError(
            f"bin sums hold {g.size} values, expected {n_features} features x {n_bins} bins"
        )
    return g.reshape(n_features, n_bins), h.reshape(n_features, n_bins)
