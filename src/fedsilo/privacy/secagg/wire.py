"""The runtime glue both users of secure aggregation share: round planning and message bodies.

Training (:mod:`fedsilo.runtime.private_party`, :mod:`fedsilo.runtime.secure_sum`) and federated analytics
(:mod:`fedsilo.analytics.secure`) run the same :mod:`.protocol` state machines over the same
transport; this module fixes how one round is planned (:func:`plan_round`) and how each step's
keys, ciphertexts and reveals travel in a :class:`~fedsilo.protocol.messages.Message` body
(JSON: hex public keys, base64 ciphertexts, hex share values), so the two cannot drift apart.
Every ``parse_*`` validates its body with one of the pydantic models below (extra keys belong
to the carrying message and are ignored) and raises :class:`ProtocolError` naming the field
on a malformed body.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, TypeAdapter

from fedsilo.errors import ProtocolError
from fedsilo.privacy.secagg.params import ThreatModel, min_degree, min_threshold
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
from fedsilo.protocol.bodies import validate


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value


def _from_hex(value: object) -> bytes:
    return bytes.fromhex(_text(value))


def _from_b64(value: object) -> bytes:
    try:
        return base64.b64decode(_text(value), validate=True)
    except binascii.Error:
        raise ValueError("not valid base64") from None


Hex = Annotated[bytes, BeforeValidator(_from_hex)]
B64 = Annotated[bytes, BeforeValidator(_from_b64)]
HexInt = Annotated[int, BeforeValidator(lambda v: int(_text(v), 16))]
Count = Annotated[int, Field(ge=0)]


class _Wire(BaseModel):
    """A step's fields; the message's other fields (query id, privacy, ...) are not its own."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class SetupWire(_Wire):
    tag: str
    parties: tuple[str, ...]
    degree: Count
    graph_seed: int
    threshold: Count
    bits: Count
    length: Count


class KeysReply(_Wire):
    c: Hex
    s: Hex
    sig: Hex


class KeysBody(_Wire):
    keys: dict[str, tuple[Hex, Hex, Hex]]


class SharesReply(_Wire):
    shares: dict[str, B64]


class ConfirmBody(_Wire):
    survivors: list[str]


class ConfirmReply(_Wire):
    masked_with: tuple[str, ...]
    macs: dict[str, Hex]


class UnmaskBody(_Wire):
    """Per surviving neighbour: [whether it masked with the recipient, its MAC]."""

    confirmations: dict[str, tuple[StrictBool, Hex]]


class RevealReply(_Wire):
    reveal: dict[str, tuple[str, int, HexInt]]


W = TypeVar("W")
_CIPHERTEXTS: TypeAdapter[dict[str, bytes]] = TypeAdapter(dict[str, B64])


def _parse(schema: type[W] | TypeAdapter[W], body: object, what: str) -> W:
    """``body`` as ``schema``, or a ProtocolError worded as every body refusal."""
    return validate(schema, body, f"malformed {what}:")


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

    ``plus`` selects SecAgg+ (a random graph of degree :func:`plus_degree`); otherwise every
    party is every other's neighbour. The threshold is the configured fraction of a share
    group, raised to the least that parties with ``threat`` (default
    :class:`~.params.ThreatModel`) accept.
    """
    n = len(parties)
    threat = threat or ThreatModel()
    degree = plus_degree(n, neighbours, threat) if plus else n - 1
    graph = neighbour_graph(list(parties), degree, graph_seed)
    k = min(len(v) for v in graph.values())
    t = max(threshold_for(k + 1, threshold), min(k + 1, min_threshold(n, k, threat)))
    return RoundSetup(tag.encode(), tuple(parties), degree, graph_seed, t, bits, length)


def plus_degree(n: int, neighbours: int | None, threat: ThreatModel) -> int:
    """The SecAgg+ degree over ``n`` parties: ``neighbours`` (default
    :func:`~.protocol.default_degree`) raised to the least that parties with ``threat``
    accept (:func:`~.params.min_degree`), as the threshold is raised to theirs.

    >>> plus_degree(10, 2, ThreatModel()), plus_degree(10, 6, ThreatModel())
    (4, 6)
    """
    if neighbours is None:
        return default_degree(n, threat)
    return max(neighbours, min_degree(n, threat))


def raised_degree(n: int, neighbours: int | None, threat: ThreatModel) -> str | None:
    """What to tell the user when :func:`plus_degree` raised a configured ``neighbours``;
    ``None`` when it did not (or none was configured)."""
    degree = plus_degree(n, neighbours, threat)
    if neighbours is None or degree == neighbours:
        return None
    return (
        f"privacy.secure_aggregation.neighbours = {neighbours} is below the least degree "
        f"parties accept for {n} parties with dropout_rate {threat.dropout_rate} and "
        f"corruption_rate {threat.corruption_rate} (the survivors' graph could disconnect); "
        f"using {degree} neighbours"
    )


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
    wire = _parse(SetupWire, body, "secure-aggregation setup")
    setup = RoundSetup(
        wire.tag.encode(),
        wire.parties,
        wire.degree,
        wire.graph_seed,
        wire.threshold,
        wire.bits,
        wire.length,
    )
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
    keys = _parse(KeysReply, body, "key advertisement")
    return keys.c, keys.s, keys.sig


def keys_body(ks: Mapping[str, SignedKeys]) -> dict[str, Any]:
    """Step 1, server: the party's live neighbours' signed public keys."""
    return {"keys": {v: [c.hex(), s.hex(), sig.hex()] for v, (c, s, sig) in ks.items()}}


def parse_keys_body(body: Mapping[str, Any]) -> dict[str, SignedKeys]:
    return _parse(KeysBody, body, "neighbour keys").keys


def encode_ciphertexts(box: Mapping[str, bytes]) -> dict[str, str]:
    return {v: b64(c) for v, c in box.items()}


def decode_ciphertexts(raw: object) -> dict[str, bytes]:
    return _parse(_CIPHERTEXTS, raw, "ciphertexts")


def shares_reply(out: Mapping[str, bytes]) -> dict[str, Any]:
    """Step 1, party: its encrypted shares, one per neighbour."""
    return {"shares": encode_ciphertexts(out)}


def parse_shares_reply(body: Mapping[str, Any]) -> dict[str, bytes]:
    return _parse(SharesReply, body, "shares").shares


def confirm_body(server: ServerRound) -> dict[str, Any]:
    """Step 3, server: the survivor set to sign."""
    return {"survivors": server.confirm_request()}


def parse_confirm_body(body: Mapping[str, Any]) -> list[str]:
    return _parse(ConfirmBody, body, "survivor set").survivors


def confirm_reply(confirmation: Confirmation) -> dict[str, Any]:
    masked, tags = confirmation
    return {"masked_with": list(masked), "macs": {v: t.hex() for v, t in tags.items()}}


def parse_confirm_reply(body: Mapping[str, Any]) -> Confirmation:
    reply = _parse(ConfirmReply, body, "confirmation")
    return reply.masked_with, reply.macs


def unmask_body(confirmations: Mapping[str, Relayed]) -> dict[str, Any]:
    """Step 4, server: the party's surviving neighbours' confirmations, each with its MAC.

    A neighbour's confirmation says whether it masked with this party, not its whole list:
    that bit is what the party checks, and with SecAgg+ at N=100 the lists were most of the
    round's JSON (20 lists of 20 names per party).
    """
    return {
        "confirmations": {
            v: [masked_me, tag.hex()] for v, (masked_me, tag) in confirmations.items()
        }
    }


def parse_unmask_body(body: Mapping[str, Any]) -> dict[str, Relayed]:
    return dict(_parse(UnmaskBody, body, "unmask request").confirmations)


def reveal_reply(reveal: Reveal) -> dict[str, Any]:
    return {"reveal": {v: [kind, x, format(y, "x")] for v, (kind, x, y) in reveal.items()}}


def parse_reveal_reply(body: Mapping[str, Any]) -> Reveal:
    return _parse(RevealReply, body, "reveal").reveal
