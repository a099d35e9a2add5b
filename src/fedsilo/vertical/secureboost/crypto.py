"""Encrypted gradient statistics: how g and h are packed and how hosts sum them per bin.

Paillier (exact): one ciphertext per row ``g * 2**h_bits + h`` (fixed point); a host's bin sums
are products of row ciphertexts, packed ``per_ciphertext`` to one ciphertext (signed slots of
``slot_bits``, :func:`paillier_layout`) before phe re-randomizes them, so re-randomizations,
decryptions and bytes drop by that factor. CKKS (approximate): per node the guest encrypts rows
in ``[g x W | h x W]`` blocks; a host multiplies by 0/1 masks, folds the row blocks with SEAL
rotations and returns one block per feature group (:func:`ckks_bin_sums`). docs/secureboost.md
has the details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import gmpy2
import numpy as np
import numpy.typing as npt
import tenseal.sealapi as sa
from phe import paillier

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import HeScheme, PublicContext, SecretContext
from fedsilo.privacy.he.ckks import CkksPublicContext
from fedsilo.privacy.he.paillier import (
    PaillierPublicContext,
    PaillierSecretContext,
    PaillierVector,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FRAC_BITS: Final = 40


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


def ckks_width(n_rows: int, n_features: int, n_bins: int, slots: int) -> int:
    """Half-block width ``W`` (a power of two >= n_bins) of the CKKS row layout.

    A ciphertext holds ``k = slots / (2W)`` rows, each as ``[g x W | h x W]``; the host folds its
    ``k`` blocks with ``log2 k`` rotations per group of ``W // n_bins`` features. Small ``W``:
    fewer guest encryptions, more rotations; this picks the cheaper by a cost model measured
    with N = 8192 (encryption ~ 2 rotations).
    """
    best, best_cost = 0, float("inf")
    w = 1 << max(0, (n_bins - 1).bit_length())
    while 2 * w <= slots:
        per_ct = slots // (2 * w)
        groups = -(-n_features // (w // n_bins))
        cost = 2.0 * -(-n_rows // per_ct) + groups * math.log2(per_ct)
        if cost < best_cost:
            best, best_cost = w, cost
        w *= 2
    if not best:
        raise ProtocolError(f"{n_bins} bins do not fit a CKKS ciphertext of {slots} slots")
    return best


def ckks_encrypt_node(public: PublicContext, g: FloatArray, h: FloatArray, width: int) -> bytes:
    """A node's rows, ``slots / (2 * width)`` per ciphertext, each as ``[g x W | h x W]``."""
    if not isinstance(public, CkksPublicContext):
        raise ProtocolError("CKKS node encryption needs a CKKS context")
    slots = public.slot_count
    per_ct = slots // (2 * width)
    n_ct = max(1, -(-len(g) // per_ct))
    blocks = np.zeros((n_ct * per_ct, 2, width))
    blocks[: len(g), 0, :] = g[:, None]
    blocks[: len(g), 1, :] = h[:, None]
    return public.serialize_vector(public.encrypt(blocks.ravel()))


def ckks_bin_sums(
    public: PublicContext,
    blob: bytes,
    width: int,
    codes: npt.NDArray[np.int32],
    rows: IntArray,
    n_bins: int,
) -> bytes:
    """Encrypted bin sums of the node: group ``j`` of ``width // n_bins`` features in block ``j``.

    Per ciphertext and feature group: one plaintext 0/1-mask product (no rescale until the sum),
    then ``log2 k`` rotations fold the ``k`` row blocks over the whole slot ring (every block
    holds the total, so no partial sum survives) and a block mask moves the group into its
    output block.
    """
    if not isinstance(public, CkksPublicContext):
        raise ProtocolError("CKKS bin sums need a CKKS context")
    slots = public.slot_count
    if width < n_bins or width & (width - 1) or 2 * width > slots:
        raise ProtocolError(f"CKKS layout width {width} is not a power of two in {n_bins}..")
    vec = public.deserialize_vector(blob)
    per_ct = slots // (2 * width)
    if vec.used != [slots] * len(vec.chunks) or len(vec.chunks) != max(1, -(-len(rows) // per_ct)):
        raise ProtocolError("CKKS node gradients do not match the node's rows")
    tools = public.seal_tools()
    ev, enc = tools.evaluator, tools.encoder
    n_feat = codes.shape[1]
    per_group = width // n_bins
    n_groups = -(-n_feat // per_group)
    cts = [c.ciphertext()[0] for c in vec.chunks]
    scale = cts[0].scale
    sub = np.zeros((len(cts) * per_ct, n_feat), dtype=np.int64)
    sub[: len(rows)] = codes[rows]
    valid = np.zeros(len(cts) * per_ct, dtype=bool)
    valid[: len(rows)] = True

    def plain(values: FloatArray, like: Any) -> Any:
        pt = sa.Plaintext()
        enc.encode(values.tolist(), like.parms_id(), scale, pt)
        return pt

    out: list[Any] = []
    for j in range(n_groups):
        feats = np.arange(j * per_group, min(n_feat, (j + 1) * per_group))
        acc: Any = None
        for c, ct in enumerate(cts):
            part = slice(c * per_ct, (c + 1) * per_ct)
            mask = np.zeros((per_ct, 2, width))
            r, f = np.nonzero(valid[part][:, None] & np.ones(len(feats), dtype=bool)[None, :])
            cols = (f * n_bins + sub[part][r, feats[f]]).astype(np.int64)
            mask[r, 0, cols] = 1.0
            mask[r, 1, cols] = 1.0
            term = sa.Ciphertext()
            ev.multiply_plain(ct, plain(mask.ravel(), ct), term)
            if acc is None:
                acc = term
            else:
                ev.add_inplace(acc, term)
        ev.rescale_to_next_inplace(acc)
        step = 2 * width
        while step < slots:
            rot = sa.Ciphertext()
            ev.rotate_vector(acc, step, tools.galois_keys, rot)
            ev.add_inplace(acc, rot)
            step *= 2
        block = np.zeros(slots)
        pos = (j % per_ct) * 2 * width
        block[pos : pos + 2 * width] = 1.0
        moved = sa.Ciphertext()
        ev.multiply_plain(acc, plain(block, acc), moved)
        if j % per_ct == 0:
            out.append(moved)
        else:
            ev.add_inplace(out[-1], moved)
    for ct in out:
        ev.rescale_to_next_inplace(ct)
    return public.serialize_vector(public.vector_from_seal(out))


def ckks_decode(
    secret: SecretContext, blob: bytes, n_features: int, n_bins: int, width: int
) -> tuple[FloatArray, FloatArray]:
    vals = secret.decrypt(secret.deserialize_vector(blob))
    per_group = width // n_bins
    n_groups = -(-n_features // per_group)
    if len(vals) < n_groups * 2 * width:
        raise ProtocolError(f"CKKS bin sums hold {len(vals)} slots, expected {n_groups} groups")
    blocks = vals[: n_groups * 2 * width].reshape(n_groups, 2, width)[:, :, : per_group * n_bins]
    g = blocks[:, 0, :].reshape(-1)[: n_features * n_bins]
    h = blocks[:, 1, :].reshape(-1)[: n_features * n_bins]
    return g, h


def decode_bin_sums(
    secret: SecretContext, blob: bytes, n_features: int, n_bins: int, n_rows: int, width: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Decrypt a host's bin sums to ``(G, H)`` of shape ``(n_features, n_bins)``.

    ``n_rows``: training rows of the tree (fixes the Paillier slot layout).
    """
    if secret.scheme is HeScheme.PAILLIER:
        g, h = paillier_decode(secret, blob, n_features * n_bins, n_rows)
    else:
        g, h = ckks_decode(secret, blob, n_features, n_bins, width)
    if g.size != n_features * n_bins:
        raise ProtocolError(
            f"bin sums hold {g.size} values, expected {n_features} features x {n_bins} bins"
        )
    return g.reshape(n_features, n_bins), h.reshape(n_features, n_bins)
