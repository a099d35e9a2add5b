"""Model parameters as named numpy arrays: get, set, flatten, check.

The wire and the aggregators see parameters as an ordered ``dict[str, np.ndarray]`` (the
model's ``state_dict`` order); aggregators work on one flat float64 vector per party.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsilo.errors import ProtocolError

Params = dict[str, np.ndarray]


def get_params(model: nn.Module) -> Params:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_params(model: nn.Module, params: Params) -> None:
    """Load ``params`` (exactly the model's state entries) into ``model``: one copy each."""
    model.load_state_dict({k: _shared(v) for k, v in params.items()}, strict=True)


def _shared(array: np.ndarray) -> torch.Tensor:
    """A tensor on ``array``'s memory (``load_state_dict`` copies it into the model), or on a
    copy when torch cannot share it (read-only, strided)."""
    if array.flags.writeable and array.flags.c_contiguous:
        return torch.from_numpy(array)
    return torch.from_numpy(np.array(array))


def flatten(params: Params, *, out: np.ndarray | None = None) -> np.ndarray:
    """All parameters as one float64 vector, written into ``out`` (a row of a matrix that
    gathers many parties' updates without a copy per party) when given."""
    if out is None:
        out = np.empty(sum(v.size for v in params.values()), dtype=np.float64)
    offset = 0
    for v in params.values():
        out[offset : offset + v.size] = np.ravel(v)
        offset += v.size
    if offset != out.size:
        raise ValueError(f"flatten: {offset} parameters into a vector of {out.size}")
    return out


def unflatten(vector: np.ndarray, like: Params) -> Params:
    out: Params = {}
    offset = 0
    for name, ref in like.items():
        size = ref.size
        out[name] = vector[offset : offset + size].reshape(ref.shape).astype(ref.dtype)
        offset += size
    return out


def check_params(params: Params, template: Params, *, finite: bool = True) -> None:
    """Raise ProtocolError unless ``params`` has exactly the template's names, shapes, dtypes
    and (with ``finite``) no NaN or infinity; ``finite=False`` where the arrays come from
    :meth:`~fedsilo.protocol.messages.Message.decode`, which refused those already."""
    missing = sorted(set(template) - set(params))
    extra = sorted(set(params) - set(template))
    if missing or extra:
        raise ProtocolError(f"parameter names differ: missing {missing}, unexpected {extra}")
    for name, ref in template.items():
        got = params[name]
        if got.shape != ref.shape:
            raise ProtocolError(f"parameter {name!r} has shape {got.shape}, expected {ref.shape}")
        if got.dtype != ref.dtype:
            raise ProtocolError(f"parameter {name!r} has dtype {got.dtype}, expected {ref.dtype}")
        if finite and got.dtype.kind == "f" and not np.isfinite(got).all():
            raise ProtocolError(f"parameter {name!r} has NaN or infinite values")
