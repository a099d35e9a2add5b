"""Unit checks: sealed channels, exact masking, a party that never crashes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedsilo.errors import ErrorCode, ProtocolError
from fedsilo.privacy.he import HeScheme, SecretContext, generate
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import serve
from fedsilo.vertical.bodies import HeteroLrSetup, LrUpdate
from fedsilo.vertical.channel import PartyChannel
from fedsilo.vertical.hetero_lr import HeteroLrParty
from fedsilo.vertical.masking import MaskLevel, Pending, draw_masks, reveal, unmask
from fedsilo.vertical.wire import blob, get_blob, get_positions


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


def test_channel_refuses_a_payload_reflected_back_to_its_sender() -> None:
    """The relay hands a's own payload for b back to a as if b had sent it (same pair key)."""
    a, b, _ = _pair()
    sealed = a.seal("b", "d", b"for b only")
    with pytest.raises(ProtocolError, match="failed authentication"):
        a.open("b", "d", sealed)
    assert b.open("a", "d", sealed) == b"for b only"


def test_channel_never_repeats_a_nonce() -> None:
    """AES-GCM under one key with a repeated nonce leaks the XOR of plaintexts and its MAC key."""
    a, _, _ = _pair()
    nonces = {a.seal("b", "d", b"same payload")[:12] for _ in range(64)}
    assert len(nonces) == 64


@pytest.mark.parametrize("rows", [[-1], [5], [0, 4, 5]])
def test_row_positions_outside_the_aligned_rows_are_refused(rows: list[int]) -> None:
    """A negative position would index from the end; one past the end reads nothing declared."""
    msg = Message(
        TaskKind.HETERO_LR_FORWARD, "j", 0, "coordinator", arrays={"rows": np.array(rows)}
    )
    with pytest.raises(ProtocolError, match="fall outside the 5 aligned rows"):
        get_positions(msg, "rows", 5, "party 'shop'")


def _set_up_host(
    secret: SecretContext,
) -> tuple[HeteroLrParty, Callable[[Message], Message], PartyChannel]:
    """A hetero-LR host after setup and keys, and the guest's end of its sealed channel."""
    host = HeteroLrParty("shop", np.random.default_rng(0).normal(size=(6, 2)))
    handle = serve("shop", host.routes)

    def call(msg: Message) -> Message:
        return Message.decode(handle(msg.encode()))

    setup = HeteroLrSetup(
        algorithm="hetero_lr", scheme=secret.scheme, guest="bank", hosts=["shop"], l2=0.0
    )
    arrays = {
        "he_public": blob(secret.public().to_bytes()),
        "train": np.arange(6),
        "test": np.arange(6),
    }
    done = call(Message(TaskKind.VERTICAL_SETUP, "j", 0, "coordinator", setup.dump(), arrays))
    assert done.error is None, done.error
    guest = PartyChannel("bank")
    keys = {"key:shop": done.arrays["channel_key"], "key:bank": blob(guest.public_key)}
    guest.connect("j", {"shop": done.arrays["channel_key"].tobytes()})
    assert call(Message(TaskKind.VERTICAL_KEYS, "j", 0, "coordinator", arrays=keys)).error is None
    return host, call, guest


def test_a_host_setup_naming_it_the_guest_is_refused() -> None:
    secret = generate("ckks")
    host = serve("shop", HeteroLrParty("shop", np.ones((6, 2))).routes)
    setup = HeteroLrSetup(
        algorithm="hetero_lr", scheme=secret.scheme, guest="shop", hosts=["bank"], l2=0.0
    )
    arrays = {
        "he_public": blob(secret.public().to_bytes()),
        "train": np.arange(6),
        "test": np.arange(6),
    }
    reply = Message.decode(
        host(Message(TaskKind.VERTICAL_SETUP, "j", 0, "c", setup.dump(), arrays).encode())
    )
    assert reply.error is not None and "the setup says otherwise" in reply.error
    assert "channel_key" not in reply.arrays


def test_a_replayed_gradient_update_is_refused_and_steps_the_host_once() -> None:
    """The coordinator sends a host's revealed gradient twice (or twice as far, at any rate it
    likes): a mask is spent by the first unmasking."""
    secret = generate("ckks")
    host, call, guest = _set_up_host(secret)
    rows = np.arange(3)
    assert (
        call(Message(TaskKind.HETERO_LR_FORWARD, "j", 0, "c", arrays={"rows": rows})).error is None
    )
    d = secret.public().encrypt(np.array([0.5, -0.25, 0.125]))
    sealed = guest.seal("shop", "d", secret.public().serialize_vector(d))
    grad = call(
        Message(
            TaskKind.HETERO_LR_GRADIENT,
            "j",
            0,
            "c",
            arrays={"rows": rows, "from:bank": blob(sealed)},
        )
    )
    assert grad.error is None, grad.error
    masked = reveal(secret, secret.deserialize_vector(get_blob(grad, "masked_gradient", "test")))
    update = Message(
        TaskKind.HETERO_LR_UPDATE,
        "j",
        0,
        "c",
        LrUpdate(learning_rate=0.5).dump(),
        {"masked": masked},
    )
    assert call(update).error is None
    stepped = host.weights.copy()
    assert np.any(stepped != 0.0)
    replayed = call(update)
    assert replayed.error is not None and "no masked gradient is pending" in replayed.error
    assert np.array_equal(host.weights, stepped)


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
