"""Pairwise sealed channels between vertical parties, relayed by the coordinator.

The coordinator relays every message and is also the arbiter that holds the HE secret key, so
a ciphertext it relays in the clear is a ciphertext it could decrypt. Guest-host payloads are
therefore sealed end to end: each party makes an X25519 key pair, the coordinator relays the
public halves (``VERTICAL_KEYS``), and each pair of parties derives an AES-256-GCM key with
HKDF-SHA256 over their shared secret. Every sealed payload is bound (as AES-GCM associated
data) to the job, sender, recipient and a label naming the step, so the relay can neither read
nor redirect nor replay one into another step unnoticed.

Threat model: semi-honest (honest-but-curious) coordinator. A coordinator that substitutes
public keys could still man-in-the-middle the channel; deployments that must resist that pin
the parties' channel keys out of band (e.g. with their mTLS identities).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedsilo.errors import ProtocolError

_NONCE = 12
_INFO = b"fedsilo/vertical/channel/v1"


class PartyChannel:
    """One party's end of the pairwise channels to every other party of a job."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._private = X25519PrivateKey.generate()
        self._keys: dict[str, AESGCM] = {}
        self._job = ""

    @property
    def public_key(self) -> bytes:
        """The 32-byte X25519 public key to hand to the other parties."""
        return self._private.public_key().public_bytes_raw()

    def connect(self, job_id: str, peers: dict[str, bytes]) -> None:
        """Derive a key per peer from the peers' public keys (``{name: 32 bytes}``)."""
        self._job = job_id
        for name, raw in peers.items():
            if name == self.party:
                continue
            if len(raw) != 32:
                raise ProtocolError(
                    f"party {self.party!r}: channel key of {name!r} is {len(raw)} bytes, not 32"
                )
            try:
                shared = self._private.exchange(X25519PublicKey.from_public_bytes(raw))
            except ValueError as exc:
                raise ProtocolError(
                    f"party {self.party!r}: invalid channel key from {name!r}: {exc}"
                ) from exc
            pair = "|".join(sorted((self.party, name))).encode()
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=job_id.encode(), info=_INFO + pair
            ).derive(shared)
            self._keys[name] = AESGCM(key)

    def _aad(self, sender: str, recipient: str, label: str) -> bytes:
        return f"{self._job}|{sender}->{recipient}|{label}".encode()

    def _key(self, peer: str) -> AESGCM:
        key = self._keys.get(peer)
        if key is None:
            raise ProtocolError(
                f"party {self.party!r}: no channel to {peer!r}; the VERTICAL_KEYS step is "
                "missing or did not list that party"
            )
        return key

    def seal(self, recipient: str, label: str, payload: bytes) -> bytes:
        """Encrypt ``payload`` for ``recipient``; only it can open the result."""
        nonce = os.urandom(_NONCE)
        aad = self._aad(self.party, recipient, label)
        return nonce + self._key(recipient).encrypt(nonce, payload, aad)

    def open(self, sender: str, label: str, sealed: bytes) -> bytes:
        """Decrypt a payload ``sender`` sealed for this party under ``label``."""
        if len(sealed) < _NONCE + 16:
            raise ProtocolError(f"party {self.party!r}: sealed payload from {sender!r} truncated")
        aad = self._aad(sender, self.party, label)
        try:
            return self._key(sender).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
        except InvalidTag:
            raise ProtocolError(
                f"party {self.party!r}: sealed payload from {sender!r} for step {label!r} "
                "failed authentication (tampered, misrouted or replayed)"
            ) from None
