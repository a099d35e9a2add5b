from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from fedsilo.errors import ErrorCode, NotReadyError, ProtocolError
from fedsilo.protocol.messages import Fault, Message, TaskKind


def message(**arrays: np.ndarray) -> Message:
    return Message(TaskKind.FIT, "job", 4, "bank-a", {"seed": 7, "nested": {"x": [1, 2]}}, arrays)


def test_round_trip_keeps_header_and_arrays_exactly() -> None:
    original = message(w=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.ones(2, np.float64))
    decoded = Message.decode(original.encode())
    assert (decoded.kind, decoded.job_id, decoded.round, decoded.sender) == (
        TaskKind.FIT,
        "job",
        4,
        "bank-a",
    )
    assert decoded.body == original.body
    assert decoded.arrays["w"].dtype == np.float32
    np.testing.assert_array_equal(decoded.arrays["w"], original.arrays["w"])


def test_array_order_is_preserved_whatever_the_names() -> None:
    names = ["z.weight", "a.bias", "m.weight", "1.weight", "1.bias", "0.bias"]
    original = message(**{n: np.full(3, i, np.float32) for i, n in enumerate(names)})
    for _ in range(5):
        assert list(Message.decode(original.encode()).arrays) == names


def test_message_without_arrays_round_trips() -> None:
    assert Message.decode(message().encode()).body["seed"] == 7


def test_nan_array_is_rejected_on_decode() -> None:
    data = message(w=np.array([1.0, np.nan], dtype=np.float32)).encode()
    with pytest.raises(ProtocolError, match="'w' from 'bank-a' has NaN"):
        Message.decode(data)


def test_oversized_message_is_rejected_before_parsing() -> None:
    data = message(w=np.zeros(1000, np.float32)).encode()
    with pytest.raises(ProtocolError, match="exceeds the 100-byte limit"):
        Message.decode(data, max_bytes=100)


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 3, b"\xff" * 64, b"{not safetensors}"])
def test_garbage_bytes_raise_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        Message.decode(garbage)


def test_other_schema_version_is_refused_with_reason() -> None:
    data = message().encode().replace(b'\\"version\\":\\"1\\"', b'\\"version\\":\\"9\\"')
    with pytest.raises(ProtocolError, match="different fedsilo versions"):
        Message.decode(data)


def test_nan_in_body_cannot_be_encoded() -> None:
    bad = Message(TaskKind.FIT, "j", 1, "p", {"loss": float("nan")})
    with pytest.raises(ValueError):
        bad.encode()


def raw_message(body_json: str, *, error: str | None = None) -> bytes:
    """Bytes a malicious sender could craft: the header JSON written by hand."""
    header = (
        '{"version":"1","kind":"fit","job_id":"job","round":4,"sender":"bank-a",'
        f'"arrays":[],"body":{body_json}' + (f',"error":{error}' if error else "") + "}"
    )
    return bytes(st_save({}, metadata={"fedsilo": header}))


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_body_field_is_rejected_on_decode_naming_the_field(token: str) -> None:
    data = raw_message(f'{{"num_examples":3,"stats":{{"loss":[0.5,{token}]}}}}')
    with pytest.raises(
        ProtocolError, match=r"party 'bank-a' round 4: fit field 'stats.loss\[1\]' is NaN"
    ):
        Message.decode(data)


def test_error_reply_round_trips_its_code_and_message() -> None:
    fault = Fault(ErrorCode.NOT_READY, "party 'bank-a' got a fit task before setup")
    decoded = Message.decode(Message(TaskKind.FIT, "job", 4, "bank-a", fault=fault).encode())
    assert decoded.fault == fault and decoded.error == fault.message
    assert decoded.error_code is ErrorCode.NOT_READY
    assert isinstance(decoded.fault.exception(), NotReadyError)
    assert Message.decode(message().encode()).fault is None


def test_an_unknown_error_code_is_a_malformed_message() -> None:
    data = raw_message("{}", error='{"code":"SchemaError","message":"x"}')
    with pytest.raises(ProtocolError, match="malformed message header"):
        Message.decode(data)
