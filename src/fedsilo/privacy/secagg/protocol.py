"""SecAgg / SecAgg+ as two state machines over bytes and numpy: one party, the server.

Bonawitz et al. 2017, Fig. 4 (semi-honest variant, no signatures); Bell et al. 2020, Sec. 3
(SecAgg+: each party is paired only with its neighbours on a random k-regular graph, and
shares are t-of-(k + 1) over the neighbourhood plus itself). SecAgg is the complete graph.

Threat model: the server (coordinator) is honest but curious; parties never talk to each
other, the server relays public keys and AES-GCM ciphertexts it cannot read. Steps, per round:

0. **advertise** – party u sends two X25519 public keys (``c`` for encryption, ``s`` for masks).
1. **share** – u draws a self-mask seed ``b_u``, Shamir-shares ``b_u`` and its ``s`` private key
   t-of-(neighbours + itself), and sends each neighbour its share encrypted under
   HKDF(X25519(c_u, c_v)).
2. **mask** – u sends ``y_u = x_u + PRG(b_u) + sum_v ±PRG(s_uv) mod 2^bits`` over the
   neighbours v that shared in step 1 (+ if u < v, - otherwise).
3. **unmask** – the server names the survivors (sent ``y``) and the dropped (shared, sent no
   ``y``); each party reveals ``b`` shares of survivors and ``s`` shares of the dropped, never
   both for one party. The server rebuilds ``b_u`` for survivors and ``s_v`` for the dropped,
   strips those masks and is left with ``sum_u x_u`` over the survivors. Too few shares or
   survivors raises :class:`RoundFailedError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedsilo.errors import ProtocolError, RoundFailedError
from fedsilo.privacy.secagg import keys, shamir
from fedsilo.privacy.secagg.quantize import ring_reduce

PublicKeys = tuple[bytes, bytes]  # (c: encryption, s: masking)
Share = tuple[int, int]  # Shamir (x, y)
Reveal = dict[str, tuple[str, int, int]]  # party -> ("s" | "b", x, y)

_MASK = b"fedsilo-secagg-mask"
_ENC = b"fedsilo-secagg-enc"


def threshold_for(group: int, fraction: float) -> int:
    """Shares needed out of ``group`` (neighbours + self): ceil(fraction * group), >= 2."""
    return min(group, max(2, math.ceil(fraction * group)))


def neighbour_graph(parties: list[str], degree: int, seed: int) -> dict[str, tuple[str, ...]]:
    """A random ``degree``-regular graph (Harary ring, randomly relabelled); complete if small.

    Degree is rounded up to even; ``degree >= n - 1`` gives every party every other party.
    """
    n = len(parties)
    if degree >= n - 1:
        return {p: tuple(q for q in parties if q != p) for p in parties}
    half = (degree + 1) // 2
    order = [parties[i] for i in np.random.default_rng(seed).permutation(n)]
    graph: dict[str, set[str]] = {p: set() for p in parties}
    for i, p in enumerate(order):
        for step in range(1, half + 1):
            q = order[(i + step) % n]
            graph[p].add(q)
            graph[q].add(p)
    return {p: tuple(sorted(graph[p])) for p in parties}


def default_degree(n: int) -> int:
    """SecAgg+ neighbours for n parties: the even number >= 3 log2(n) (Bell et al.: O(log n))."""
    k = math.ceil(3 * math.log2(max(n, 2)))
    return min(n - 1, k + (k % 2))


@dataclass(frozen=True)
class RoundSetup:
    """What the server fixes for one round and tells every party (its own slice of it)."""

    tag: bytes  # unique per job, round and attempt; bound into every key and ciphertext
    ids: Mapping[str, int]  # Shamir x-coordinate of each party (distinct, >= 1)
    neighbours: Mapping[str, tuple[str, ...]]
    threshold: int
    bits: int
    length: int  # ring elements per input

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.bits <= 32 else np.uint64


def _mask(seed: bytes, setup: RoundSetup) -> np.ndarray:
    return keys.prg(seed, setup.length, setup.dtype)


def _aad(setup: RoundSetup, sender: str, recipient: str) -> bytes:
    return b"|".join([setup.tag, sender.encode(), recipient.encode()])


def _pack(share_s: Share, share_b: Share) -> bytes:
    n = shamir.SHARE_BYTES
    return (
        share_s[0].to_bytes(4, "big")
        + share_s[1].to_bytes(n, "big")
        + share_b[1].to_bytes(n, "big")
    )


def _unpack(raw: bytes) -> tuple[Share, Share]:
    n = shamir.SHARE_BYTES
    if len(raw) != 4 + 2 * n:
        raise ProtocolError("a decrypted share has the wrong length")
    x = int.from_bytes(raw[:4], "big")
    return (x, int.from_bytes(raw[4 : 4 + n], "big")), (x, int.from_bytes(raw[4 + n :], "big"))


class PartyRound:
    """One party's side of one round. Each method may run once, in order."""

    def __init__(self, name: str, setup: RoundSetup) -> None:
        if name not in setup.neighbours:
            raise ProtocolError(f"party '{name}' is not in this secure-aggregation round")
        self.name = name
        self.setup = setup
        self._c = keys.new_private_key()
        self._s = keys.new_private_key()
        self._stage = "advertise"
        self._peer_keys: dict[str, PublicKeys] = {}
        self._b = b""
        self._held: dict[str, tuple[Share, Share]] = {}  # shares of others' (s, b), and own
        self._channel: dict[str, bytes] = {}  # AES-GCM key per neighbour, agreed once
        self._masked_with: set[str] = set()

    def _advance(self, expected: str, nxt: str) -> None:
        if self._stage != expected:
            raise ProtocolError(
                f"party '{self.name}': secure-aggregation step '{nxt}' out of order "
                f"(at step '{self._stage}')"
            )
        self._stage = nxt

    def advertise(self) -> PublicKeys:
        self._advance("advertise", "share")
        return keys.public_bytes(self._c), keys.public_bytes(self._s)

    def share(self, peer_keys: Mapping[str, PublicKeys]) -> dict[str, bytes]:
        """Encrypted shares of (s key, b seed) for each neighbour whose keys arrived."""
        self._advance("share", "mask")
        allowed = set(self.setup.neighbours[self.name])
        if not set(peer_keys) <= allowed:
            raise ProtocolError(f"party '{self.name}' got keys of non-neighbours")
        if len(peer_keys) + 1 < self.setup.threshold:
            raise RoundFailedError(
                f"party '{self.name}' has {len(peer_keys)} live neighbours; the threshold "
                f"needs {self.setup.threshold - 1}"
            )
        self._peer_keys = dict(peer_keys)
        self._b = os.urandom(keys.KEY_BYTES)
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
            key = self._channel_key(holder)
            out[holder] = keys.encrypt(key, _pack(s_sh, b_sh), _aad(self.setup, self.name, holder))
        return out

    def _channel_key(self, peer: str) -> bytes:
        """The key both ends derive from their ``c`` keys; one X25519 exchange per neighbour."""
        if peer not in self._channel:
            self._channel[peer] = keys.agree(
                self._c, self._peer_keys[peer][0], purpose=_ENC, tag=self.setup.tag
            )
        return self._channel[peer]

    def mask(self, ciphertexts: Mapping[str, bytes], x: np.ndarray) -> np.ndarray:
        """``y = x + PRG(b) ± PRG(s_uv)`` over the neighbours that sent this party shares."""
        self._advance("mask", "unmask")
        if x.dtype != self.setup.dtype or x.shape != (self.setup.length,):
            raise ProtocolError(f"party '{self.name}': input is not a ring vector of this round")
        if not set(ciphertexts) <= set(self._peer_keys):
            raise ProtocolError(f"party '{self.name}' got shares from parties it has no keys of")
        my_id = self.setup.ids[self.name]
        for sender, blob in ciphertexts.items():
            key = self._channel_key(sender)
            s_sh, b_sh = _unpack(keys.decrypt(key, blob, _aad(self.setup, sender, self.name)))
            if s_sh[0] != my_id:
                raise ProtocolError(f"party '{self.name}' got a share for another party")
            self._held[sender] = (s_sh, b_sh)
        self._masked_with = set(ciphertexts)
        y = x.copy()
        y += _mask(self._b, self.setup)
        for v in sorted(self._masked_with):
            seed = keys.agree(self._s, self._peer_keys[v][1], purpose=_MASK, tag=self.setup.tag)
            if self.name < v:
                y += _mask(seed, self.setup)
            else:
                y -= _mask(seed, self.setup)
        return ring_reduce(y, self.setup.bits)

    def unmask(self, survivors: Iterable[str], dropped: Iterable[str]) -> Reveal:
        """``b`` shares of survivors, ``s`` shares of the dropped; never both for one party."""
        self._advance("unmask", "done")
        alive, gone = set(survivors), set(dropped)
        if alive & gone:
            raise ProtocolError(
                f"party '{self.name}' refuses to unmask: {sorted(alive & gone)} are named both "
                "survivor and dropped (revealing both shares would expose their input)"
            )
        if self.name not in alive:
            raise ProtocolError(f"party '{self.name}' is not among the survivors it was sent")
        if not gone <= self._masked_with:
            raise ProtocolError(f"party '{self.name}' was asked about parties it never paired with")
        mine = alive & (self._masked_with | {self.name})
        if len(mine) < self.setup.threshold:
            raise RoundFailedError(
                f"party '{self.name}': {len(mine)} survivors in its neighbourhood, "
                f"threshold {self.setup.threshold}"
            )
        out: Reveal = {}
        for v in sorted(mine):
            x, y = self._held[v][1]
            out[v] = ("b", x, y)
        for v in sorted(gone):
            x, y = self._held[v][0]
            out[v] = ("s", x, y)
        return out


class ServerRound:
    """The coordinator's side of one round: routes keys and ciphertexts, then unmasks."""

    def __init__(self, setup: RoundSetup) -> None:
        self.setup = setup
        self._keys: dict[str, PublicKeys] = {}
        self._shared: dict[str, set[str]] = {}  # party -> neighbours it masks with (U2)
        self._masked: dict[str, np.ndarray] = {}
        self.dropped: list[str] = []

    def _fail(self, why: str) -> RoundFailedError:
        return RoundFailedError(f"secure aggregation aborted: {why}")

    def route_keys(self, advertised: Mapping[str, PublicKeys]) -> dict[str, dict[str, PublicKeys]]:
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

    def unmask_request(self, party: str) -> tuple[list[str], list[str]]:
        """What ``party`` is asked about: its surviving and its dropped shareholders."""
        mine = self._shared[party]
        alive = set(self._masked)
        return sorted((mine | {party}) & alive), sorted(mine & set(self.dropped))

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
        for p in sorted(alive):
            total += self._masked[p]
            b = shamir.combine(b_shares[p][:t])
            total -= _mask(b.to_bytes(keys.KEY_BYTES, "big"), self.setup)
        for v in sorted(gone):
            raw = shamir.combine(s_shares[v][:t]).to_bytes(keys.KEY_BYTES, "big")
            s_v: X25519PrivateKey = keys.private_from_bytes(raw)
            if keys.public_bytes(s_v) != self._keys[v][1]:
                raise self._fail(f"the mask key of dropped party '{v}' did not reconstruct")
            for u in sorted(self._shared[v] & alive):
                seed = keys.agree(s_v, self._keys[u][1], purpose=_MASK, tag=self.setup.tag)
                if u < v:
                    total -= _mask(seed, self.setup)
                else:
                    total += _mask(seed, self.setup)
        return ring_reduce(total, self.setup.bits)
