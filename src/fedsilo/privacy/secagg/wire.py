"""The runtime glue both users of secure aggregation share: round planning and message bodies.

Training (:mod:`.party_side`, :mod:`.server_side`) and federated analytics
(:mod:`fedsilo.analytics.secure`) run the same :mod:`.protocol` state machines over the same
transport; this module fixes how one round is planned (:func:`plan_round`) and how each step's
keys, ciphertexts and reveals travel in a :class:`~fedsilo.protocol.messages.Message` body
(JSON: hex public keys, base64 ciphertexts, hex share values), so the two cannot drift apart.
Every ``parse_*`` raises :class:`ProtocolError` on a malformed body.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from fedsilo.errors import ProtocolError
from fedsilo.privacy.secagg.protocol import (
    PartyRound,
    PublicKeys,
    Reveal,
    RoundSetup,
    ServerRound,
    default_degree,
    neighbour_graph,
    threshold_for,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: object) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise ProtocolError("a ciphertext is not valid base64") from None


def plan_round(
    parties: Sequence[str],
    *,
    plus: bool,
    neighbours: int | None,
    threshold: float,
    bits: int,
    length: int,
    tag: str,
    graph_seed: int,
) -> RoundSetup:
    """One round's setup: Shamir ids in the given order, the neighbour graph, the threshold.

    ``plus`` selects SecAgg+ (a random graph of degree ``neighbours``, default
    :func:`~.protocol.default_degree`); otherwise every party is every other's neighbour.
    """
    n = len(parties)
    degree = (neighbours or default_degree(n)) if plus else n - 1
    graph = neighbour_graph(list(parties), degree, graph_seed)
    k = min(len(v) for v in graph.values())
    return RoundSetup(
        tag.encode(),
        {p: i + 1 for i, p in enumerate(parties)},
        graph,
        threshold_for(k + 1, threshold),
        bits,
        length,
    )


def setup_body(rs: RoundSetup, party: str) -> dict[str, Any]:
    """What ``party`` is told of the round (its neighbours and their ids only)."""
    return {
        "tag": rs.tag.decode(),
        "neighbours": list(rs.neighbours[party]),
        "threshold": rs.threshold,
        "bits": rs.bits,
        "length": rs.length,
        "ids": {q: rs.ids[q] for q in (*rs.neighbours[party], party)},
    }


def setup_from_body(name: str, body: Mapping[str, Any]) -> RoundSetup:
    """A party's view of the round from :func:`setup_body`; refuses a degenerate threshold."""
    try:
        neighbours = tuple(str(v) for v in body["neighbours"])
        threshold = int(body["threshold"])
        bits = int(body["bits"])
        length = int(body["length"])
        ids = {str(k): int(v) for k, v in dict(body["ids"]).items()}
        tag = str(body["tag"]).encode()
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party '{name}': malformed secure-aggregation setup ({exc})") from None
    if not (2 <= threshold <= len(neighbours) + 1):
        raise ProtocolError(
            f"party '{name}' refuses threshold {threshold} for "
            f"{len(neighbours) + 1} shareholders (must be at least 2)"
        )
    if not (16 <= bits <= 64) or length < 0:
        raise ProtocolError(f"party '{name}' refuses a {bits}-bit ring of length {length}")
    return RoundSetup(tag, ids, {name: neighbours}, threshold, bits, length)


def keys_reply(state: PartyRound) -> dict[str, str]:
    """Step 0, party: advertise the two public keys."""
    c_pk, s_pk = state.advertise()
    return {"c": c_pk.hex(), "s": s_pk.hex()}


def parse_keys_reply(body: Mapping[str, Any]) -> PublicKeys:
    try:
        return bytes.fromhex(str(body["c"])), bytes.fromhex(str(body["s"]))
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed key advertisement ({exc})") from None


def keys_body(ks: Mapping[str, PublicKeys]) -> dict[str, Any]:
    """Step 1, server: the party's live neighbours' public keys."""
    return {"keys": {v: [c.hex(), s.hex()] for v, (c, s) in ks.items()}}


def parse_keys_body(body: Mapping[str, Any]) -> dict[str, PublicKeys]:
    try:
        return {
            str(v): (bytes.fromhex(k[0]), bytes.fromhex(k[1]))
            for v, k in dict(body["keys"]).items()
        }
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ProtocolError(f"malformed neighbour keys ({exc})") from None


def encode_ciphertexts(box: Mapping[str, bytes]) -> dict[str, str]:
    return {v: b64(c) for v, c in box.items()}


def decode_ciphertexts(raw: object) -> dict[str, bytes]:
    try:
        return {str(v): unb64(c) for v, c in dict(raw).items()}  # type: ignore[call-overload]
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"malformed ciphertexts ({exc})") from None


def shares_reply(out: Mapping[str, bytes]) -> dict[str, Any]:
    """Step 1, party: its encrypted shares, one per neighbour."""
    return {"shares": encode_ciphertexts(out)}


def parse_shares_reply(body: Mapping[str, Any]) -> dict[str, bytes]:
    if "shares" not in body:
        raise ProtocolError("the reply carries no shares")
    return decode_ciphertexts(body["shares"])


def unmask_body(server: ServerRound, party: str) -> dict[str, Any]:
    """Step 3, server: the party's surviving and dropped shareholders."""
    alive, gone = server.unmask_request(party)
    return {"survivors": alive, "dropped": gone}


def reveal_reply(reveal: Reveal) -> dict[str, Any]:
    return {"reveal": {v: [kind, x, format(y, "x")] for v, (kind, x, y) in reveal.items()}}


def parse_reveal_reply(body: Mapping[str, Any]) -> Reveal:
    try:
        return {
            str(v): (str(kd), int(x), int(str(y), 16))
            for v, (kd, x, y) in dict(body["reveal"]).items()
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise ProtocolError(f"malformed reveal ({exc})") from None
