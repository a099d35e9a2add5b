"""SecAgg / SecAgg+ as two state machines over bytes and numpy: one party, the server.

Bonawitz et al. 2017, Fig. 4 and Sec. 6 (the malicious-server variant: signed keys and a
consistency round); Bell et al. 2020, Sec. 3 (SecAgg+: each party is paired only with its
neighbours on a random k-regular graph, and shares are t-of-(k + 1) over the neighbourhood
plus itself). SecAgg is the complete graph.

Threat model: the server (coordinator) may deviate from the protocol; parties are honest but
curious. Parties never talk to each other: the server relays public keys, AES-GCM ciphertexts
signatures and MACs it cannot forge. Every party holds a long-term Ed25519 identity and a roster of
the others' public identity keys from its own configuration (:mod:`.identity`), and takes no
parameter on the server's word: it derives the neighbour graph and the Shamir ids itself from
the party list, and refuses a threshold or degree below its own minimum (:mod:`.params`).
Steps, per round:

0. **advertise** – party u sends two X25519 public keys: ``c`` for its channels, with its
   identity signature over the session scope (the job), its name and ``c``; and ``s`` for
   masks, fresh each round. ``c`` and its signature belong to u's :class:`Session`: one per
   job, so they are the same bytes every round.
1. **share** – u checks each neighbour's ``c`` signature against its roster (once per session
   and neighbour key: a :class:`Session` remembers the channels it has checked), draws a
   self-mask seed ``b_u``, Shamir-shares ``b_u`` and its ``s`` private key
   t-of-(neighbours + itself), and sends each neighbour its share, with u's own ``s`` public
   key, encrypted under HKDF(X25519(c_u, c_v)) with the round tag, sender and recipient bound.
2. **mask** – u decrypts its neighbours' shares; each carries the sender's ``s`` key, which u
   compares with the ``s`` key the server relayed (a mismatch is a substitution: u refuses
   before it masks). Then it sends ``y_u = x_u + PRG(b_u) + sum_v ±PRG(s_uv) mod 2^bits``
   over the neighbours v that shared in step 1 (+ if u < v, - otherwise), if at least
   ``t - 1`` did. A party that computes ``x_u`` only now (trains, spending privacy budget)
   checks the shares first (:meth:`PartyRound.receive`) and masks after
   (:meth:`PartyRound.apply`): a forged share costs it nothing.
3. **confirm** – the server names the survivors (sent ``y``); u checks the set (it contains u,
   its graph restricted to the survivors is connected, and with ``tolerate_dropouts=False`` it
   is everyone) and confirms it, with whether u masked with v, to each surviving
   neighbour v: HMAC-SHA256 under a key derived from their channel secret (X25519 of the
   signed ``c`` keys), which the server cannot forge. Bonawitz et al. sign the set; a MAC
   convinces the same neighbours at ~1/40 of the cost of an Ed25519 verification.
4. **unmask** – the server relays the confirmations of u's surviving neighbours; u checks
   every one verifies on the very set u confirmed, that every surviving neighbour confirmed, and
   that masking was mutual; then reveals ``b`` shares of survivors and ``s`` shares of the
   dropped (its masking neighbours missing from the set), never both for one party, and only
   once per round. The server rebuilds ``b_u`` for survivors and ``s_v`` for the dropped,
   strips those masks and is left with ``sum_u x_u`` over the survivors. Too few shares or
   survivors raises :class:`RoundFailedError`.

**Keys per session, masks per round.** Bonawitz et al. draw both key pairs every round. Here
``s`` (whose private key is revealed when u drops) and ``b_u`` are fresh every round, but the
channel key ``c`` lives for the session (a training job; an analytics query is a session of
its own). Its only jobs are to encrypt shares and key the confirmation MACs, and every
ciphertext and MAC binds the round tag, so nothing of one round can be replayed into
another. What that buys: a neighbour's signature and the channel's X25519 are computed once
per session and neighbour, not once per round (at 100 parties, ~2,000 Ed25519 verifications
and ~2,000 X25519 exchanges per round). ``s`` is authenticated through the channel instead of
a per-round signature: the server can relay a substituted ``s`` key, but not forge the
neighbour's encrypted share that names the real one. The cost: a ``c`` secret that leaks
mid-job opens the shares sent to its party in earlier rounds of that job (no forward secrecy
within a session); ``c`` secrets are never revealed by the protocol.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.privacy.secagg import keys, shamir
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.privacy.secagg.params import (
    ThreatModel,
    connected,
    min_degree,
    min_threshold,
)
from fedsilo.privacy.secagg.quantize import ring_reduce

PublicKeys = tuple[bytes, bytes]  # (c: encryption, s: masking)
# (c, s, Ed25519 signature over the session scope, name and c); s is authenticated in step 2
SignedKeys = tuple[bytes, bytes, bytes]
# (neighbours masked with, HMAC per neighbour it confirms to) as sent; as relayed to one
# neighbour: (whether the sender masked with that neighbour, the HMAC for that neighbour),
# which is all the neighbour checks (mutual masking) and all the HMAC covers besides the set
Confirmation = tuple[tuple[str, ...], Mapping[str, bytes]]
Relayed = tuple[bool, bytes]
Share = tuple[int, int]  # Shamir (x, y)
Channel = tuple[AESGCM, bytes]  # with one neighbour: (share cipher, confirmation MAC key)
Reveal = dict[str, tuple[str, int, int]]  # party -> ("s" | "b", x, y)

_MASK = b"fedsilo-secagg-mask"
_CHANNEL = b"fedsilo-secagg-channel"  # 64 bytes: the AES-GCM key, then the confirmation key
_SESSION = b"fedsilo-secagg-session|"
_SURVIVORS = b"fedsilo-secagg-survivors|"


def threshold_for(group: int, fraction: float) -> int:
    """Shares needed out of ``group`` (neighbours + self): ceil(fraction * group), >= 2."""
    return min(group, max(2, math.ceil(fraction * group)))


def neighbour_graph(
    parties: Sequence[str], degree: int, seed: int
) -> Mapping[str, tuple[str, ...]]:
    """A random ``degree``-regular graph (Harary ring, randomly relabelled); complete if small.

    Degree is rounded up to even; ``degree >= n - 1`` gives every party every other party.
    The relabelling orders parties by SHA-256(seed, name), so every party derives the same
    graph from the same list and seed, whatever its numpy version. A pure function of its
    arguments, so it is computed once per party list (a job's rounds reuse it) and shared
    read-only.
    """
    return _graph(tuple(parties), degree, seed)


@functools.lru_cache(maxsize=32)
def _graph(parties: tuple[str, ...], degree: int, seed: int) -> Mapping[str, tuple[str, ...]]:
    n = len(parties)
    if degree >= n - 1:
        return MappingProxyType({p: tuple(q for q in parties if q != p) for p in parties})
    half = (degree + 1) // 2
    salt = str(seed).encode() + b"|"
    order = sorted(parties, key=lambda p: hashlib.sha256(salt + p.encode()).digest())
    ring = order * 3  # each party's neighbours: the `half` parties on either side of it
    return MappingProxyType(
        {
            p: (*ring[n + i - half : n + i], *ring[n + i + 1 : n + i + half + 1])
            for i, p in enumerate(order)
        }
    )


@functools.lru_cache(maxsize=256)
def _survivors_connected(
    alive: frozenset[str], parties: tuple[str, ...], degree: int, seed: int
) -> bool:
    """Whether the round's graph restricted to ``alive`` is connected (pure, so cached)."""
    return connected(alive, _graph(parties, degree, seed))


def default_degree(n: int, threat: ThreatModel | None = None) -> int:
    """SecAgg+ neighbours for n parties: the even number >= 3 log2(n) (Bell et al.: O(log n)),
    raised to what parties with ``threat`` (default: :class:`ThreatModel`) accept."""
    k = math.ceil(3 * math.log2(max(n, 2)))
    k = max(k + (k % 2), min_degree(n, threat or ThreatModel()))
    return min(n - 1, k)


@dataclass(frozen=True)
class RoundSetup:
    """What the server fixes for one round; every party derives the graph and ids from it."""

    tag: bytes  # unique per job, round and attempt; bound into every key, ciphertext, signature
    parties: tuple[str, ...]  # Shamir x-coordinate of a party = its position + 1
    degree: int  # >= len(parties) - 1: the complete graph (SecAgg)
    graph_seed: int
    threshold: int
    bits: int
    length: int  # ring elements per input
    ids: Mapping[str, int] = field(init=False, repr=False, compare=False)
    neighbours: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.parties)) != len(self.parties) or len(self.parties) < 2:
            raise ProtocolError("a secure-aggregation round needs at least 2 distinct parties")
        object.__setattr__(self, "ids", {p: i + 1 for i, p in enumerate(self.parties)})
        graph = neighbour_graph(self.parties, self.degree, self.graph_seed)
        object.__setattr__(self, "neighbours", graph)

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.bits <= 32 else np.uint64

    @property
    def complete(self) -> bool:
        return self.degree >= len(self.parties) - 1


def session_message(scope: bytes, name: str, c: bytes) -> bytes:
    """What a party signs for its session's channel key (the scope, its name, the key)."""
    return _SESSION + json.dumps([scope.decode(), name, c.hex()]).encode()


class Session:
    """A party's channel key ``c`` for one session (a job, or one analytics query) and the
    channels to neighbours it has checked.

    :meth:`channel` verifies a neighbour's signed ``c`` against the roster the first time it
    meets that key and keeps the pair's derived keys; the same ``(c, signature)`` later is a
    lookup. A different key for the same neighbour (it restarted) is verified afresh.
    """

    def __init__(self, identity: Identity, scope: bytes) -> None:
        self.identity = identity
        self.scope = scope
        self._c = keys.new_private_key()
        self.c_public = keys.public_bytes(self._c)
        self.signature = identity.sign(session_message(scope, identity.name, self.c_public))
        self._channels: dict[str, tuple[bytes, bytes, Channel]] = {}

    def channel(self, peer: str, c: bytes, signature: bytes) -> Channel:
        """(share cipher, confirmation MAC key) with ``peer``; ProtocolError if its ``c`` is
        not signed by ``peer`` for this session."""
        known = self._channels.get(peer)
        if known is not None and known[0] == c and known[1] == signature:
            return known[2]
        self.identity.verify(peer, signature, session_message(self.scope, peer, c))
        both = keys.agree(self._c, c, purpose=_CHANNEL, tag=self.scope, length=2 * keys.KEY_BYTES)
        pair = (keys.aead(both[: keys.KEY_BYTES]), both[keys.KEY_BYTES :])
        self._channels[peer] = (c, signature, pair)
        return pair


def survivor_set_digest(survivors: Iterable[str]) -> bytes:
    """SHA-256 of the sorted survivor set (computed once per party, confirmed by all)."""
    return hashlib.sha256(json.dumps(sorted(survivors)).encode()).digest()


def survivors_message(
    tag: bytes, sender: str, recipient: str, digest: bytes, masked_recipient: bool
) -> bytes:
    """What a party authenticates to a neighbour in the consistency round: the survivor set
    (its digest) and whether it masked with that neighbour. Each field is length-prefixed,
    so no two different field lists give the same bytes."""
    fields = (tag, sender.encode(), recipient.encode(), digest)
    return b"".join([_SURVIVORS, *(len(f).to_bytes(4, "big") + f for f in fields)]) + (
        b"\x01" if masked_recipient else b"\x00"
    )


def _expander(setup: RoundSetup) -> keys.MaskExpander:
    return keys.expander(setup.length, setup.dtype)


def _aad(setup: RoundSetup, sender: str, recipient: str) -> bytes:
    return b"|".join([setup.tag, sender.encode(), recipient.encode()])


def _pack(share_s: Share, share_b: Share, s_public: bytes) -> bytes:
    """The plaintext of one encrypted share: x, the two share values, the sender's ``s`` key."""
    n = shamir.SHARE_BYTES
    return (
        share_s[0].to_bytes(4, "big")
        + share_s[1].to_bytes(n, "big")
        + share_b[1].to_bytes(n, "big")
        + s_public
    )


def _unpack(raw: bytes) -> tuple[Share, Share, bytes]:
    n = shamir.SHARE_BYTES
    if len(raw) != 4 + 2 * n + keys.KEY_BYTES:
        raise ProtocolError("a decrypted share has the wrong length")
    x = int.from_bytes(raw[:4], "big")
    s_share = (x, int.from_bytes(raw[4 : 4 + n], "big"))
    b_share = (x, int.from_bytes(raw[4 + n : 4 + 2 * n], "big"))
    return s_share, b_share, raw[4 + 2 * n :]


class PartyRound:
    """One party's side of one round. Each method may run once, in order.

    ``tolerate_dropouts=False`` (analytics queries) refuses any survivor set short of every
    party of the round: a query never tolerates a dropout. ``session``: the party's
    :class:`Session` of the job (its channel key and checked neighbours); without one the
    round is a session of its own.
    """

    def __init__(
        self,
        identity: Identity,
        setup: RoundSetup,
        *,
        session: Session | None = None,
        tolerate_dropouts: bool = True,
    ) -> None:
        self.name = name = identity.name
        if name not in setup.ids:
            raise ProtocolError(f"party '{name}' is not in this secure-aggregation round")
        if session is not None and session.identity is not identity:
            raise ValueError("a round's session must belong to the same identity")
        self._identity = identity
        self.setup = setup
        self._tolerate_dropouts = tolerate_dropouts
        self._check_parameters()
        self._session = session or Session(identity, setup.tag)
        self._s = keys.new_private_key()
        self._stage = "advertise"
        self._peer_keys: dict[str, PublicKeys] = {}
        self._b = b""
        self._held: dict[str, tuple[Share, Share]] = {}  # shares of others' (s, b), and own
        # (AES-GCM key, confirmation MAC key) per neighbour, agreed once
        self._channel: dict[str, Channel] = {}
        self._masked_with: set[str] = set()
        self._survivors: frozenset[str] = frozenset()
        self._digest = b""  # of the survivor set it confirmed
        self._revealed: dict[str, str] = {}  # neighbour -> the one kind of share revealed

    def _refuse(self, why: str) -> ProtocolError:
        return ProtocolError(f"party '{self.name}' refuses the secure-aggregation round: {why}")

    def _check_parameters(self) -> None:
        """The threshold and degree this party accepts, from its own threat model."""
        rs, threat = self.setup, self._identity.threat
        n, k = len(rs.parties), len(rs.neighbours[self.name])
        rates = (
            f"{n} parties, {k} neighbours, its dropout_rate {threat.dropout_rate} and "
            f"corruption_rate {threat.corruption_rate}"
        )
        if not rs.complete and k < min_degree(n, threat):
            raise self._refuse(
                f"degree {k} is below its minimum {min_degree(n, threat)} for {rates} (the "
                "survivors' graph could disconnect); raise privacy.secure_aggregation.neighbours"
            )
        least = min_threshold(n, k, threat)
        if rs.threshold < least or rs.threshold > k + 1:
            raise self._refuse(
                f"threshold {rs.threshold} of {k + 1} shareholders; it accepts {least} to "
                f"{k + 1} for {rates}. Raise privacy.secure_aggregation.threshold"
            )
        if not (16 <= rs.bits <= 64) or rs.length < 0:
            raise self._refuse(f"a {rs.bits}-bit ring of length {rs.length}")

    def _advance(self, expected: str, nxt: str) -> None:
        if self._stage != expected:
            raise ProtocolError(
                f"party '{self.name}': secure-aggregation step '{nxt}' out of order "
                f"(at step '{self._stage}')"
            )
        self._stage = nxt

    def advertise(self) -> SignedKeys:
        self._advance("advertise", "share")
        session = self._session
        return session.c_public, keys.public_bytes(self._s), session.signature

    def share(self, peer_keys: Mapping[str, SignedKeys]) -> dict[str, bytes]:
        """Encrypted shares of (s key, b seed) for each neighbour whose signed keys arrived."""
        self._advance("share", "mask")
        allowed = set(self.setup.neighbours[self.name])
        if not set(peer_keys) <= allowed:
            raise self._refuse(f"it got keys of non-neighbours {sorted(set(peer_keys) - allowed)}")
        for v, (c, _, sig) in sorted(peer_keys.items()):
            try:
                self._channel[v] = self._session.channel(v, c, sig)
            except ProtocolError as exc:
                raise self._refuse(
                    f"the key advertisement relayed as '{v}''s is not signed by '{v}' ({exc}); "
                    "the keys may have been substituted"
                ) from None
        if len(peer_keys) + 1 < self.setup.threshold:
            raise RoundFailedError(
                f"party '{self.name}' has {len(peer_keys)} live neighbours; the threshold "
                f"needs {self.setup.threshold - 1}"
            )
        self._peer_keys = {v: (c, s) for v, (c, s, _) in peer_keys.items()}
        self._b = os.urandom(keys.KEY_BYTES)
        s_public = keys.public_bytes(self._s)
        holders = [*sorted(peer_keys), self.name]
        xs = [self.setup.ids[h] for h in holders]
        t = self.setup.threshold
        s_shares = shamir.split(int.from_bytes(keys.private_bytes(self._s), "big"), t, xs)
        b_shares = shamir.split(int.from_bytes(self._b, "big"), t, xs)
        out: dict[str, bytes] = {}
        for holder, s_sh, b_sh in zip(holders, s_shares, b_shares, strict=True):
            if holder == self.name:
                self._held[self.name] = (s_sh, b_sh)
                continue
            plain = _pack(s_sh, b_sh, s_public)
            out[holder] = keys.encrypt(
                self._channel[holder][0], plain, _aad(self.setup, self.name, holder)
            )
        return out

    def mask(
        self, ciphertexts: Mapping[str, bytes], x: np.ndarray, *, overwrite: bool = False
    ) -> np.ndarray:
        """``y = x + PRG(b) ± PRG(s_uv)`` over the neighbours that sent this party shares:
        :meth:`receive` then :meth:`apply`.

        ``overwrite``: ``x`` is the caller's scratch (its encoded input) and is masked in place.
        """
        self.receive(ciphertexts)
        return self.apply(x, overwrite=overwrite)

    def receive(self, ciphertexts: Mapping[str, bytes]) -> None:
        """Decrypt and check the neighbours' shares (the first half of :meth:`mask`).

        A party that computes its input only now (trains, spends privacy budget) calls this
        first: a forged share or a substituted key is refused before that work and spend.
        """
        self._advance("mask", "apply")
        try:
            self._receive(ciphertexts)
        except BaseException:
            self._stage = "refused"  # no later step of this round runs on a half-checked state
            raise

    def _receive(self, ciphertexts: Mapping[str, bytes]) -> None:
        if not set(ciphertexts) <= set(self._peer_keys):
            raise ProtocolError(f"party '{self.name}' got shares from parties it has no keys of")
        if len(ciphertexts) + 1 < self.setup.threshold:
            raise RoundFailedError(
                f"party '{self.name}' got shares from {len(ciphertexts)} neighbours; the "
                f"threshold needs {self.setup.threshold - 1} before it masks its input"
            )
        my_id = self.setup.ids[self.name]
        for sender, blob in sorted(ciphertexts.items()):
            plain = keys.decrypt(
                self._channel[sender][0], blob, _aad(self.setup, sender, self.name)
            )
            s_sh, b_sh, s_public = _unpack(plain)
            if s_sh[0] != my_id:
                raise ProtocolError(f"party '{self.name}' got a share for another party")
            if s_public != self._peer_keys[sender][1]:
                raise self._refuse(
                    f"the mask key relayed as '{sender}''s is not the one '{sender}' sent in its "
                    "encrypted share; the keys may have been substituted"
                )
            self._held[sender] = (s_sh, b_sh)
        self._masked_with = set(ciphertexts)

    def apply(self, x: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
        """The masked input ``y`` from the shares :meth:`receive` checked."""
        self._advance("apply", "confirm")
        if x.dtype != self.setup.dtype or x.shape != (self.setup.length,):
            raise ProtocolError(f"party '{self.name}': input is not a ring vector of this round")
        y = x if overwrite else x.copy()
        masks = _expander(self.setup)
        y += masks.expand(self._b)
        for v in sorted(self._masked_with):
            seed = keys.agree(self._s, self._peer_keys[v][1], purpose=_MASK, tag=self.setup.tag)
            if self.name < v:
                y += masks.expand(seed)
            else:
                y -= masks.expand(seed)
        return ring_reduce(y, self.setup.bits)

    def confirm(self, survivors: Iterable[str]) -> Confirmation:
        """Confirm the survivor set it was sent to each neighbour (consistency round)."""
        self._advance("confirm", "unmask")
        alive = frozenset(survivors)
        everyone = set(self.setup.parties)
        if not alive <= everyone:
            raise self._refuse(f"survivors {sorted(alive - everyone)} are not in the round")
        if self.name not in alive:
            raise self._refuse("it is not among the survivors it was sent")
        if not self._tolerate_dropouts and (
            alive != everyone or self._masked_with != set(self.setup.neighbours[self.name])
        ):
            missing = sorted(
                (everyone - alive) | (set(self.setup.neighbours[self.name]) - self._masked_with)
            )
            raise self._refuse(
                f"{', '.join(missing)} named as dropped; this query needs every party (a "
                "partial sum is a different answer, and no query tolerates a dropout)"
            )
        rs = self.setup
        if not _survivors_connected(alive, rs.parties, rs.degree, rs.graph_seed):
            raise self._refuse(
                "the survivors' graph is disconnected: unmasking would give the coordinator "
                "one sum per component"
            )
        withheld = (alive & set(self.setup.neighbours[self.name])) - set(self._peer_keys)
        if withheld:
            raise self._refuse(
                f"surviving neighbours {sorted(withheld)} never got to exchange keys with it "
                "(their keys were withheld)"
            )
        self._survivors = alive
        masked = tuple(sorted(self._masked_with))
        digest = self._digest = survivor_set_digest(alive)
        tags = {
            v: keys.mac(
                self._channel[v][1],
                survivors_message(self.setup.tag, self.name, v, digest, v in self._masked_with),
            )
            for v in sorted(alive & set(self.setup.neighbours[self.name]))
        }
        return masked, tags

    def unmask(self, confirmations: Mapping[str, Relayed]) -> Reveal:
        """``b`` shares of survivors, ``s`` shares of the dropped; never both for one party.

        Only after every surviving neighbour confirmed the very set this party confirmed (an
        HMAC under their pairwise key, which the coordinator cannot forge), and masking was
        mutual with each of them.
        """
        self._advance("unmask", "done")
        alive = self._survivors
        expected = alive & set(self.setup.neighbours[self.name])
        if set(confirmations) != expected:
            missing, extra = (
                sorted(expected - set(confirmations)),
                sorted(set(confirmations) - expected),
            )
            raise self._refuse(
                f"the consistency round is incomplete (missing confirmations of {missing}, "
                f"unexpected ones of {extra})"
            )
        digest = self._digest
        for v, (masked_me, tag) in sorted(confirmations.items()):
            message = survivors_message(self.setup.tag, v, self.name, digest, masked_me)
            try:
                keys.check_mac(self._channel[v][1], message, tag, sender=v)
            except ProtocolError:
                raise self._refuse(
                    f"'{v}''s confirmation does not verify on the survivor set this party "
                    "confirmed: the parties were shown different survivor sets, or it is forged"
                ) from None
            if masked_me != (v in self._masked_with):
                raise self._refuse(f"masking with '{v}' was not mutual (shares were withheld)")
        mine = alive & (self._masked_with | {self.name})
        if len(mine) < self.setup.threshold:
            raise RoundFailedError(
                f"party '{self.name}': {len(mine)} survivors in its neighbourhood, "
                f"threshold {self.setup.threshold}"
            )
        gone = self._masked_with - alive
        out: Reveal = {}
        for v in sorted(mine):
            out[v] = self._reveal(v, "b")
        for v in sorted(gone):
            out[v] = self._reveal(v, "s")
        return out

    def _reveal(self, v: str, kind: str) -> tuple[str, int, int]:
        if self._revealed.setdefault(v, kind) != kind:  # defence in depth: stages allow one
            raise self._refuse(f"it already revealed the other share of '{v}'")
        x, y = self._held[v][0 if kind == "s" else 1]
        return kind, x, y


class ServerRound:
    """The coordinator's side of one round: routes keys, ciphertexts and confirmations, unmasks."""

    def __init__(self, setup: RoundSetup) -> None:
        self.setup = setup
        self._keys: dict[str, SignedKeys] = {}
        self._shared: dict[str, set[str]] = {}  # party -> neighbours it masks with (U2)
        self._masked: dict[str, np.ndarray] = {}
        self.dropped: list[str] = []

    def _fail(self, why: str) -> RoundFailedError:
        return RoundFailedError(f"secure aggregation aborted: {why}")

    def route_keys(self, advertised: Mapping[str, SignedKeys]) -> dict[str, dict[str, SignedKeys]]:
        """Each live party gets its live neighbours' keys; parties below threshold sit out."""
        t, nb = self.setup.threshold, self.setup.neighbours
        live = {p for p in advertised if p in nb}
        while True:  # dropping a party can push a neighbour below threshold
            short = {p for p in live if len(set(nb[p]) & live) + 1 < t}
            if not short:
                break
            live -= short
        if len(live) < max(t, 2):
            raise self._fail(
                f"{len(live)} parties sent keys with enough live neighbours; the threshold "
                f"needs {max(t, 2)}"
            )
        self._keys = {p: advertised[p] for p in live}
        return {p: {v: self._keys[v] for v in nb[p] if v in live} for p in sorted(live)}

    def route_shares(self, sent: Mapping[str, Mapping[str, bytes]]) -> dict[str, dict[str, bytes]]:
        """Ciphertexts to their recipients, among the parties that shared (U2)."""
        senders = {p for p in sent if p in self._keys}
        inbox: dict[str, dict[str, bytes]] = {p: {} for p in sorted(senders)}
        for u in senders:
            expected = {v for v in self.setup.neighbours[u] if v in self._keys}
            if set(sent[u]) != expected:
                raise self._fail(f"party '{u}' sent shares for the wrong set of parties")
            for v, blob in sent[u].items():
                if v in senders:
                    inbox[v][u] = blob
        self._shared = {u: set(inbox[u]) for u in senders}
        return inbox

    def collect(self, masked: Mapping[str, np.ndarray]) -> tuple[list[str], list[str]]:
        """Record masked inputs; return (survivors, dropped) for the unmask request."""
        t = self.setup.threshold
        for p, y in masked.items():
            if p in self._shared:
                if y.dtype != self.setup.dtype or y.shape != (self.setup.length,):
                    raise ProtocolError(f"party '{p}' sent a masked input of the wrong shape")
                self._masked[p] = y
        alive = set(self._masked)
        self.dropped = sorted(set(self._shared) - alive)
        for p in sorted(alive):
            if len((self._shared[p] | {p}) & alive) < t:
                raise self._fail(
                    f"party '{p}' has {len((self._shared[p] | {p}) & alive)} surviving "
                    f"shareholders, threshold {t}"
                )
        for v in self.dropped:
            if len(self._shared[v] & alive) < t:
                raise self._fail(
                    f"dropped party '{v}' has {len(self._shared[v] & alive)} surviving "
                    f"shareholders, threshold {t}"
                )
        if len(alive) < 2:
            raise self._fail(f"{len(alive)} masked input(s); a sum needs at least 2")
        return sorted(alive), self.dropped

    def confirm_request(self) -> list[str]:
        """The survivor set every survivor is asked to confirm (consistency round)."""
        return sorted(self._masked)

    def route_confirmations(
        self, confirmed: Mapping[str, Confirmation]
    ) -> dict[str, dict[str, Relayed]]:
        """Each survivor gets its surviving neighbours' confirmations, each with its own MAC.

        Every survivor must confirm: a party refuses to unmask without its neighbours'.
        """
        alive = set(self._masked)
        missing = sorted(alive - set(confirmed))
        if missing:
            raise self._fail(f"{', '.join(missing)} did not confirm the survivor set")
        out: dict[str, dict[str, Relayed]] = {p: {} for p in sorted(alive)}
        for v, (masked, tags) in confirmed.items():
            with_v = frozenset(masked)
            for p, tag in tags.items():
                if p in out and p != v:
                    out[p][v] = (p in with_v, tag)
        return out

    def unmask(self, reveals: Mapping[str, Reveal]) -> np.ndarray:
        """The ring sum of the survivors' inputs."""
        alive = set(self._masked)
        gone = set(self.dropped)
        b_shares: dict[str, list[Share]] = {p: [] for p in alive}
        s_shares: dict[str, list[Share]] = {p: [] for p in gone}
        for holder, reveal in reveals.items():
            if holder not in alive:
                continue
            for v, (kind, x, y) in reveal.items():
                if kind == "b" and v in alive and v in self._shared[holder] | {holder}:
                    b_shares[v].append((x, y))
                elif kind == "s" and v in gone and v in self._shared[holder]:
                    s_shares[v].append((x, y))
        t = self.setup.threshold
        short = sorted(p for p, sh in {**b_shares, **s_shares}.items() if len(sh) < t)
        if short:
            raise self._fail(f"fewer than {t} shares came back for {', '.join(short)}")
        total = np.zeros(self.setup.length, dtype=self.setup.dtype)
        masks = _expander(self.setup)
        for p in sorted(alive):
            total += self._masked[p]
            b = shamir.combine(b_shares[p][:t])
            total -= masks.expand(b.to_bytes(keys.KEY_BYTES, "big"))
        for v in sorted(gone):
            raw = shamir.combine(s_shares[v][:t]).to_bytes(keys.KEY_BYTES, "big")
            s_v: X25519PrivateKey = keys.private_from_bytes(raw)
            if keys.public_bytes(s_v) != self._keys[v][1]:
                raise self._fail(f"the mask key of dropped party '{v}' did not reconstruct")
            for u in sorted(self._shared[v] & alive):
                seed = keys.agree(s_v, self._keys[u][1], purpose=_MASK, tag=self.setup.tag)
                if u < v:
                    total -= masks.expand(seed)
                else:
                    total += masks.expand(seed)
        return ring_reduce(total, self.setup.bits)
