"""The cryptographic recipes SecAgg uses, all from ``cryptography`` (nothing hand-rolled).

* Key agreement: X25519 (RFC 7748): a fresh mask key pair per party per round, a channel key
  pair per party per job (:class:`~fedsilo.privacy.secagg.protocol.Session`).
* Key derivation: HKDF-SHA256 over the X25519 shared secret, with the purpose and the round
  tag (mask seeds) or the session scope (channel keys) in ``info``, so channel keys and mask
  seeds are independent; one HKDF output of 64 bytes gives a pair's two channel keys (share
  encryption, confirmation MACs), and every ciphertext and MAC binds the round tag.
* Share encryption: AES-256-GCM, random 96-bit nonce, the sender/recipient/round bound as
  associated data. A failed decryption raises one opaque :class:`ProtocolError`.
* Mask expansion (PRG): the AES-128-CTR keystream keyed with the first 128 bits of a 256-bit
  seed (an HKDF output, or the random self-mask seed; zero counter block; each key is used
  for exactly one stream, since seeds are fresh per round and per pair). AES-CTR is a
  cryptographically secure PRG and 128 bits is the security level of the X25519 agreement
  the pairwise seeds come from, as in Google's AES-128-CTR seeded PRNGs (Prio, DPF). With
  AES-NI OpenSSL expands a 400 KB mask in ~39 µs here against ~54 µs for AES-256 (measured:
  mask expansion is the largest share of a SecAgg+ round at 100 parties). numpy's generators
  are not designed to be unpredictable, so they are not used for masks.
* Identity signatures: Ed25519 (RFC 8032). Each party holds one long-term signing key; it
  signs its key advertisement. A signature that does not verify raises one opaque
  :class:`ProtocolError` naming only whose signature it was.
* Confirmations: HMAC-SHA256 under the second half of the pairwise channel key of two
  neighbours, whose X25519 halves were signed: the coordinator cannot forge one.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedsilo.errors import ProtocolError

KEY_BYTES = 32
_NONCE_BYTES = 12
_ZERO_COUNTER = modes.CTR(bytes(16))  # each PRG key is used for one stream only
PRG_KEY_BYTES = 16  # AES-128: the 128-bit level of the X25519 agreements behind the seeds


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def agree(
    own: X25519PrivateKey,
    peer_public: bytes,
    *,
    purpose: bytes,
    tag: bytes,
    length: int = KEY_BYTES,
) -> bytes:
    """``length`` key bytes both ends derive: HKDF(X25519(own, peer), info=purpose|tag)."""
    if len(peer_public) != KEY_BYTES:
        raise ProtocolError("a public key must be 32 bytes")
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise ProtocolError("invalid X25519 public key") from None
    return hkdf(shared, purpose + b"|" + tag, length)


def hkdf(secret: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def mac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message``."""
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h.finalize()


def check_mac(key: bytes, message: bytes, tag: bytes, *, sender: str) -> None:
    """Constant-time HMAC check; one opaque :class:`ProtocolError` if it fails."""
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    try:
        h.verify(tag)
    except InvalidSignature:
        raise ProtocolError(f"the confirmation of '{sender}' does not verify") from None


def aead(key: bytes) -> AESGCM:
    """The AES-256-GCM cipher of a channel key: built once per channel, used for every share."""
    return AESGCM(key)


def encrypt(cipher: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plaintext, aad)


def decrypt(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
    try:
        return cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise ProtocolError("an encrypted share failed to decrypt") from None


class MaskExpander:
    """The PRG: ``length`` uniformly random ring elements from a 32-byte seed (the AES-128-CTR
    keystream), into one reused buffer: no allocation per mask.

    ``expand`` returns a read-only view that the next call overwrites: add or subtract it at
    once. Mask expansion is the largest cost of a round, and fresh 400 KB buffers per mask
    (and the zero plaintext) cost page faults as well as the keystream itself. Get one with
    :func:`expander`: it is this thread's, and kept across masks, parties and rounds.
    """

    def __init__(self, length: int, dtype: type[np.unsignedinteger]) -> None:
        self._size = length * np.dtype(dtype).itemsize
        self._zeros = _zeros(self._size)
        self._out = bytearray(self._size + 15)  # update_into needs a block of slack
        self._view = np.frombuffer(memoryview(self._out)[: self._size], dtype=dtype)
        self._view.flags.writeable = False

    def expand(self, seed: bytes) -> np.ndarray:
        if len(seed) != KEY_BYTES:
            raise ValueError("a PRG seed must be 32 bytes")
        stream = Cipher(algorithms.AES(seed[:PRG_KEY_BYTES]), _ZERO_COUNTER).encryptor()
        stream.update_into(self._zeros, self._out)
        return self._view


@functools.lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    """The all-zero plaintext the keystream encrypts: immutable, so shared by all threads."""
    return bytes(size)


_THREAD = threading.local()


def expander(length: int, dtype: type[np.unsignedinteger]) -> MaskExpander:
    """This thread's :class:`MaskExpander` for ``length`` values of ``dtype``.

    Its buffer is reused by every mask of every party and round this thread expands (one
    party's 400 KB buffers per round cost ~0.25 ms of page faults on a fresh heap); a view is
    used at once, so sharing it within a thread is safe, and threads never share one.
    """
    cache: dict[tuple[int, str], MaskExpander] | None = getattr(_THREAD, "expanders", None)
    if cache is None:
        cache = _THREAD.expanders = {}
    key = (length, np.dtype(dtype).str)
    found = cache.get(key)
    if found is None:
        if len(cache) >= 4:  # a few model sizes at a time; older buffers go
            cache.clear()
        found = cache[key] = MaskExpander(length, dtype)
    return found


def new_identity_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def identity_public(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte Ed25519 public key (what a roster lists)."""
    return key.public_key().public_bytes_raw()


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def identity_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


def verify(public: Ed25519PublicKey, signature: bytes, message: bytes, *, signer: str) -> None:
    """Check an Ed25519 signature; one opaque :class:`ProtocolError` if it does not hold."""
    try:
        public.verify(signature, message)
    except (InvalidSignature, ValueError):
        raise ProtocolError(f"the signature of '{signer}' does not verify") from None
