"""Round checkpoints: the global parameters plus the server optimizer's state, one file.

A checkpoint is a safetensors file (never pickle): tensors ``params.<name>`` in the model's
parameter order and ``server_optimizer.<name>`` (see
:meth:`~fedsilo.aggregation.ServerOptimizer.state_dict`), and one metadata key ``fedsilo``
with JSON ``{"version", "job_id", "round", "params": [names in order]}``. It is written
atomically (temporary file, fsync, ``os.replace``), so a crash leaves the old file or the new
one, never half of one; the job store records its SHA-256 and the loader checks it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from fedsilo.errors import ProtocolError, StoreError
from fedsilo.models import Params, check_params

CHECKPOINT_VERSION = 1
META_KEY = "fedsilo"
PARAMS = "params."
SERVER_OPT = "server_optimizer."


def save_checkpoint(
    path: Path,
    params: Params,
    server_state: dict[str, np.ndarray],
    *,
    job_id: str,
    round: int,
) -> str:
    """Write the checkpoint atomically; return the file's SHA-256 (hex)."""
    meta = {"version": CHECKPOINT_VERSION, "job_id": job_id, "round": round, "params": [*params]}
    arrays = {PARAMS + k: np.asarray(v, order="C") for k, v in params.items()}
    arrays.update({SERVER_OPT + k: np.asarray(v, order="C") for k, v in server_state.items()})
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    data = save(arrays, metadata={META_KEY: text})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(
    path: Path, template: Params, *, job_id: str, round: int, sha256: str | None = None
) -> tuple[Params, dict[str, np.ndarray]]:
    """Read a checkpoint; parameters are checked against ``template`` (names, shapes, dtypes).

    Raises :class:`StoreError` naming the file when it is missing, corrupt, does not match the
    recorded digest, or belongs to another job, round or model.
    """
    where = f"checkpoint {path} (job {job_id!r}, round {round})"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"{where} is missing. The job store and its checkpoint directory must be kept "
            "together; restore the file, or start the job again under a new job id."
        ) from None
    except OSError as exc:
        raise StoreError(f"{where} cannot be read: {exc.strerror}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(
            f"{where} is corrupt: its SHA-256 differs from the one recorded in the job store "
            "when it was written. Restore the file, or start the job again under a new job id."
        )
    try:
        arrays = load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{where} is not a readable fedsilo checkpoint: {exc}") from None
    if (meta.get("version"), meta.get("job_id"), meta.get("round")) != (
        CHECKPOINT_VERSION,
        job_id,
        round,
    ):
        raise StoreError(
            f"{where} holds version {meta.get('version')} job {meta.get('job_id')!r} round "
            f"{meta.get('round')}; the store expects version {CHECKPOINT_VERSION} of this job "
            "and round"
        )
    params = {k[len(PARAMS) :]: v for k, v in arrays.items() if k.startswith(PARAMS)}
    state = {k[len(SERVER_OPT) :]: v for k, v in arrays.items() if k.startswith(SERVER_OPT)}
    try:
        check_params(params, template)
    except ProtocolError as exc:
        raise StoreError(
            f"{where} does not fit this job's model ({exc}); did the model or the parties' "
            "data change since the job started?"
        ) from None
    return {name: params[name] for name in template}, state


def _metadata(data: bytes) -> dict[str, Any]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header.
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"][META_KEY])
    if not isinstance(meta, dict):
        raise ValueError("checkpoint metadata is not a JSON object")
    return meta
