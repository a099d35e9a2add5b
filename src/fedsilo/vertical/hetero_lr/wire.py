"""Small helpers shared by the hetero-LR party and arbiter: bytes in message arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError
from fedsilo.protocol.messages import Message


def blob(data: bytes) -> npt.NDArray[np.uint8]:
    """Bytes as a uint8 array for :attr:`Message.arrays`."""
    return np.frombuffer(data, dtype=np.uint8)


def get_blob(msg: Message, name: str, who: str) -> bytes:
    arr = msg.arrays.get(name)
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 1:
        raise ProtocolError(f"{who}: {msg.kind.value} message lacks the byte payload {name!r}")
    return arr.tobytes()


def get_positions(msg: Message, name: str, n_rows: int, who: str) -> npt.NDArray[np.int64]:
    arr = msg.arrays.get(name)
    if arr is None or arr.dtype != np.int64 or arr.ndim != 1 or arr.size == 0:
        raise ProtocolError(f"{who}: {msg.kind.value} message lacks row positions {name!r}")
    if arr.min() < 0 or arr.max() >= n_rows:
        raise ProtocolError(
            f"{who}: {msg.kind.value} positions {name!r} fall outside the {n_rows} aligned rows"
        )
    return np.asarray(arr, dtype=np.int64)


def get_float(msg: Message, key: str, who: str) -> float:
    value = msg.body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ProtocolError(f"{who}: {msg.kind.value} message lacks the number {key!r}")
    return float(value)
