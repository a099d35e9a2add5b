"""The runtime glue both users of secure aggregation share: round planning and message bodies.

Training (:mod:`fedsilo.runtime.private_party`, :mod:`fedsilo.runtime.secure_sum`) and federated analytics
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
from fedsilo.privacy.secagg.params import ThreatModel, min_threshold
from fedsilo.privacy.secagg.protocol import (
    Confirmation,
    PartyRound,
    Relayed,
    Reveal,
    RoundSetup,
    ServerRound,
    SignedKeys,
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
    threat: ThreatModel | None = None,
) -> RoundSetup:
    """One round's setup: Shamir ids in the given order, the neighbour graph, the threshold.

    ``plus`` selects SecAgg+ (a random graph of degree ``neighbours``, default
    :func:`~.protocol.default_degree`); otherwise every party is every other's neighbour.
    The threshold is the configured fraction of a share group, raised to the least that
    parties with ``threat`` (default :class:`~.params.ThreatModel`) accept.
    """
    n = len(parties)
    threat = threat or ThreatModel()
    degree = (neighbours or default_degree(n, threat)) if plus else n - 1
    graph = neighbour_graph(list(parties), degree, graph_seed)
    k = min(len(v) for v in graph.values())
    t = max(threshold_for(k + 1, threshold), min(k + 1, min_threshold(n, k, threat)))
    return RoundSetup(tag.encode(), tuple(parties), degree, graph_seed, t, bits, length)


def setup_body(rs: RoundSetup) -> dict[str, Any]:
    """What every party is told of the round; each derives the graph and ids from it."""
    return {
        "tag": rs.tag.decode(),
        "parties": list(rs.parties),
        "degree": rs.degree,
        "graph_seed": rs.graph_seed,
        "threshold": rs.threshold,
        "bits": rs.bits,
        "length": rs.length,
    }


def setup_from_body(body: Mapping[str, Any], *, tag_prefix: str) -> RoundSetup:
    """A party's copy of the round from :func:`setup_body`.

    ``tag_prefix`` (the job and round from the message header) must start the tag, so a
    signature of this round cannot be replayed into another. Parameter checks against the
    party's own threat model happen in :class:`~.protocol.PartyRound`.
    """
    try:
        setup = RoundSetup(
            str(body["tag"]).encode(),
            tuple(str(p) for p in body["parties"]),
            int(body["degree"]),
            int(body["graph_seed"]),
            int(body["threshold"]),
            int(body["bits"]),
            int(body["length"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed secure-aggregation setup ({exc})") from None
    if not setup.tag.decode().startswith(tag_prefix):
        raise ProtocolError(
            f"secure-aggregation tag {setup.tag.decode()!r} does not belong to {tag_prefix!r}"
        )
    return setup


def keys_reply(state: PartyRound) -> dict[str, str]:
    """Step 0, party: advertise the two public keys, signed."""
    c_pk, s_pk, sig = state.advertise()
    return {"c": c_pk.hex(), "s": s_pk.hex(), "sig": sig.hex()}


def parse_keys_reply(body: Mapping[str, Any]) -> SignedKeys:
    try:
        return (
            bytes.fromhex(str(body["c"])),
            bytes.fromhex(str(body["s"])),
            bytes.fromhex(str(body["sig"])),
        )
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed key advertisement ({exc})") from None


def keys_body(ks: Mapping[str, SignedKeys]) -> dict[str, Any]:
    """Step 1, server: the party's live neighbours' signed public keys."""
    return {"keys": {v: [c.hex(), s.hex(), sig.hex()] for v, (c, s, sig) in ks.items()}}


def parse_keys_body(body: Mapping[str, Any]) -> dict[str, SignedKeys]:
    try:
        return {
            str(v): (bytes.fromhex(k[0]), bytes.fromhex(k[1]), bytes.fromhex(k[2]))
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


def confirm_body(server: ServerRound) -> dict[str, Any]:
    """Step 3, server: the survivor set to sign."""
    return {"survivors": server.confirm_request()}


def parse_confirm_body(body: Mapping[str, Any]) -> list[str]:
    try:
        return [str(p) for p in body["survivors"]]
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed survivor set ({exc})") from None


def confirm_reply(confirmation: Confirmation) -> dict[str, Any]:
    masked, tags = confirmation
    return {"masked_with": list(masked), "macs": {v: t.hex() for v, t in tags.items()}}


def parse_confirm_reply(body: Mapping[str, Any]) -> Confirmation:
    try:
        masked = tuple(str(p) for p in body["masked_with"])
        return masked, {str(v): bytes.fromhex(str(t)) for v, t in dict(body["macs"]).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed confirmation ({exc})") from None


def unmask_body(confirmations: Mapping[str, Relayed]) -> dict[str, Any]:
    """Step 4, server: the party's surviving neighbours' confirmations, each with its MAC.

    Each distinct survivor set is sent once and the confirmations point at it by index: in an
    honest round every neighbour confirmed the same set, so the body carries one set instead
    of one copy per neighbour (at N=100 that was most of the round's JSON).
    """
    sets: list[list[str]] = []
    index: dict[tuple[str, ...], int] = {}
    confirmed: dict[str, list[Any]] = {}
    for v, (masked, tag) in confirmations.items():
        i = index.setdefault(tuple(masked), len(sets))
        if i == len(sets):
            sets.append(list(masked))
        confirmed[v] = [i, tag.hex()]
    return {"sets": sets, "confirmations": confirmed}


def parse_unmask_body(body: Mapping[str, Any]) -> dict[str, Relayed]:
    try:
        sets = [tuple(str(p) for p in s) for s in body["sets"]]
        relayed: dict[str, Relayed] = {}
        for v, (i, tag) in dict(body["confirmations"]).items():
            if type(i) is not int or not 0 <= i < len(sets):
                raise ValueError(f"confirmation of {v!r} points at no survivor set")
            relayed[str(v)] = (sets[i], bytes.fromhex(str(tag)))
        return relayed
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed unmask request ({exc})") from None


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
