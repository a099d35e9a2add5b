"""What a hostile process can put on the wire: any JSON body (NaN and Infinity included, which
``Message.encode`` refuses and a hand-written sender does not) and any arrays."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from fedsilo.protocol.messages import SCHEMA_VERSION, Message


def raw(
    msg: Message,
    body: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
    rnd: int | None = None,
) -> bytes:
    """``msg`` re-encoded by hand with ``body`` (and ``arrays``, ``rnd`` if given)."""
    arrays = msg.arrays if arrays is None else arrays
    header = {
        "version": SCHEMA_VERSION,
        "kind": msg.kind.value,
        "job_id": msg.job_id,
        "round": msg.round if rnd is None else rnd,
        "sender": msg.sender,
        "body": dict(body),
        "arrays": list(arrays),
    }
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return bytes(st_save(contiguous, metadata={"fedsilo": json.dumps(header, allow_nan=True)}))
