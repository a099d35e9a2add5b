"""Arrays inside vertical messages: bytes payloads, float vectors, row positions, branch bits.

Each reader checks dtype, rank and range and raises a :class:`ProtocolError` naming the
message kind, the array and who read it, so no role indexes an array it has not checked.
"""

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


def get_positions(
    msg: Message, name: str, n_rows: int, who: str, *, allow_empty: bool = False
) -> npt.NDArray[np.int64]:
    """A 1-D integer array of row positions, each in ``0..n_rows-1``."""
    arr = msg.arrays.get(name)
    if arr is None or arr.dtype.kind not in "iu" or arr.ndim != 1 or not (arr.size or allow_empty):
        raise ProtocolError(f"{who}: {msg.kind.value} message lacks row positions {name!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_rows):
        raise ProtocolError(
            f"{who}: {msg.kind.value} positions {name!r} fall outside the {n_rows} aligned rows"
        )
    return np.asarray(arr, dtype=np.int64)


def get_bits(msg: Message, name: str, size: int, who: str) -> npt.NDArray[np.bool_]:
    """A 0/1 uint8 vector of exactly ``size`` entries (a branch or partition per row)."""
    arr = msg.arrays.get(name)
    if arr is None or arr.dtype != np.uint8 or arr.shape != (size,) or (arr > 1).any():
        raise ProtocolError(
            f"{who}: {msg.kind.value} message from {msg.sender!r} lacks {size} 0/1 values {name!r}"
        )
    return arr.astype(bool)
