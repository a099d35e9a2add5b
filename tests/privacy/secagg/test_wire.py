"""The secure-aggregation step bodies: each round-trips, and a malformed one (from a deviating
coordinator or a malicious party) is a ProtocolError naming the step and the field."""

from __future__ import annotations

from typing import Any

import pytest

from fedsilo.errors import ProtocolError
from fedsilo.privacy.secagg import wire

KEY = bytes(range(32))


def test_honest_bodies_round_trip_and_ignore_the_carrying_message_fields() -> None:
    rs = wire.plan_round(
        ["a", "b", "c"],
        plus=False,
        neighbours=None,
        threshold=0.5,
        bits=32,
        length=4,
        tag="job|3|",
        graph_seed=7,
    )
    body = wire.setup_body(rs) | {"query": "q1", "step": "keys"}  # analytics carries these
    assert wire.setup_from_body(body, tag_prefix="job|3|") == rs
    keys = {"b": (KEY, KEY[::-1], b"sig")}
    assert wire.parse_keys_body(wire.keys_body(keys)) == keys
    assert wire.parse_shares_reply(wire.shares_reply({"b": b"\x00\xff"})) == {"b": b"\x00\xff"}
    reveal = {"b": ("s", 2, 2**70 + 5)}
    assert wire.parse_reveal_reply(wire.reveal_reply(reveal)) == reveal
    confirmation = (("a", "b"), {"b": b"mac"})
    assert wire.parse_confirm_reply(wire.confirm_reply(confirmation)) == confirmation


@pytest.mark.parametrize(
    ("parse", "body", "refusal"),
    [
        (
            lambda b: wire.setup_from_body(b, tag_prefix="j|"),
            {
                "tag": "j|1",
                "parties": ["a"],
                "degree": -1,
                "graph_seed": 1,
                "threshold": 1,
                "bits": 8,
                "length": 1,
            },
            "malformed secure-aggregation setup: field 'degree' is invalid",
        ),
        (
            lambda b: wire.setup_from_body(b, tag_prefix="j|"),
            {
                "tag": "j|1",
                "parties": "ab",
                "degree": 1,
                "graph_seed": 1,
                "threshold": 1,
                "bits": 8,
                "length": 1,
            },
            "field 'parties' is invalid",
        ),
        (
            wire.parse_keys_reply,
            {"c": "zz", "s": "00", "sig": "00"},
            "key advertisement: field 'c'",
        ),
        (wire.parse_keys_reply, {"c": "00", "s": 5, "sig": "00"}, "field 's' is invalid"),
        (
            wire.parse_keys_body,
            {"keys": {"b": ["00", "00"]}},
            "neighbour keys: field 'keys.b.2' is invalid",
        ),
        (wire.parse_shares_reply, {}, "malformed shares: field 'shares' is invalid"),
        (wire.parse_shares_reply, {"shares": {"b": "not base64!"}}, "field 'shares.b'"),
        (wire.parse_confirm_body, {"survivors": "abc"}, "survivor set: field 'survivors'"),
        (wire.parse_confirm_reply, {"masked_with": ["a"], "macs": {"b": 1}}, "field 'macs.b'"),
        (
            wire.parse_unmask_body,
            {"confirmations": {"b": [True]}},
            "unmask request: field 'confirmations.b.1'",
        ),
        (
            wire.parse_unmask_body,
            {"confirmations": {"b": [1, "00"]}},  # a bool, never a number read as one
            "unmask request: field 'confirmations.b.0' is invalid",
        ),
        (wire.parse_reveal_reply, {"reveal": {"b": ["s", 1, "xyz"]}}, "reveal: field 'reveal.b.2'"),
    ],
)
def test_a_malformed_step_body_is_refused_naming_the_field(
    parse: Any, body: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(body)
    assert refusal in str(info.value)
