"""Unit checks: sealed channels, exact masking, a party that never crashes."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.errors import ErrorCode, ProtocolError
from fedsilo.privacy.he import HeScheme
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import serve
from fedsilo.vertical.channel import PartyChannel
from fedsilo.vertical.hetero_lr import HeteroLrParty
from fedsilo.vertical.masking import MaskLevel, Pending, draw_masks, unmask


def _pair() -> tuple[PartyChannel, PartyChannel, PartyChannel]:
    a, b, c = PartyChannel("a"), PartyChannel("b"), PartyChannel("c")
    keys = {ch.party: ch.public_key for ch in (a, b, c)}
    for ch in (a, b, c):
        ch.connect("job", keys)
    return a, b, c


def test_channel_seals_for_one_recipient_and_step() -> None:
    a, b, c = _pair()
    sealed = a.seal("b", "d", b"ciphertext")
    assert b"ciphertext" not in sealed
    assert b.open("a", "d", sealed) == b"ciphertext"
    with pytest.raises(ProtocolError, match="failed authentication"):
        b.open("a", "u", sealed)  # replayed into another step
    with pytest.raises(ProtocolError, match="failed authentication"):
        c.open("a", "d", sealed)  # misrouted to another host
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ProtocolError):
        b.open("a", "d", tampered)


def test_unmasking_is_exact_whatever_the_mask() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0, 3, 1000)
    results = []
    for _ in range(5):
        masks = draw_masks(values.size, 24)
        assert np.all(np.abs(masks) >= 1.25 * 2**24) and np.all(np.abs(masks) < 1.75 * 2**24)
        level = MaskLevel(hiding_bits=21, value_bits=2)  # k = 24
        results.append(unmask(values + masks, Pending(HeScheme.CKKS, masks), level, "test"))
    for r in results[1:]:
        assert np.array_equal(r, results[0])  # independent of the mask
    np.testing.assert_allclose(results[0], values, atol=2.0 ** (24 - 52))
    assert len({float(m) for m in draw_masks(100, 24)}) == 100  # fresh masks


def test_unmask_refuses_values_beyond_the_mask_range() -> None:
    masks = draw_masks(2, 16)
    level = MaskLevel(hiding_bits=15, value_bits=0)  # k = 16
    with pytest.raises(ProtocolError, match="beyond what the masks hide"):
        unmask(masks + np.array([0.0, 2.0**15]), Pending(HeScheme.CKKS, masks), level, "gradient")


def test_party_turns_garbage_and_out_of_order_tasks_into_error_replies() -> None:
    party = serve("shop", HeteroLrParty("shop", np.ones((5, 2))).routes)
    reply = Message.decode(party(b"not a message"))
    assert reply.error is not None and "malformed" in reply.error
    task = Message(
        TaskKind.HETERO_LR_FORWARD, "j", 0, "coordinator", arrays={"rows": np.array([0, 1])}
    )
    reply = Message.decode(party(task.encode()))
    assert reply.error is not None and "before setup" in reply.error
    assert reply.error_code is ErrorCode.NOT_READY
    task = Message(TaskKind.FIT, "j", 0, "coordinator")
    reply = Message.decode(party(task.encode()))
    assert reply.error is not None and "does not answer" in reply.error
    assert reply.error_code is ErrorCode.UNSUPPORTED
