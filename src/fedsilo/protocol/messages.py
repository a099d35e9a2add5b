"""Messages between coordinator and parties: one safetensors blob each.

A message is a small JSON header (schema version, job, round, kind, sender, body) stored in
the safetensors metadata, plus named, typed arrays stored as safetensors tensors. No pickle:
decoding cannot run code, and :meth:`Message.decode` checks the size limit, the schema
version, the kind, that every array is finite and that the body holds no NaN or infinity
before anything uses it.

An error reply carries a :class:`Fault` in its header: ``{"code": <ErrorCode value>,
"message": <text for people>}``, one shape for every role; the receiver rebuilds the error
from the code (:meth:`Fault.exception`), never from a class name or the text.

A party's reply may carry ``anchor`` in its header: the party's signed audit-log head
(:class:`fedsilo.privacy.audit.Anchor`), added by :func:`with_anchor` after the reply is built,
whatever the task, without touching the arrays.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedsilo.errors import ErrorCode, FedsiloError, ProtocolError, error_for

SCHEMA_VERSION = "1"
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024

Arrays = dict[str, np.ndarray]


class TaskKind(enum.Enum):
    DESCRIBE = "describe"  # report schema (names and types only)
    STATS = "stats"  # local sufficient statistics for shared preprocessing
    SETUP = "setup"  # receive the preprocessing plan and the model spec
    FIT = "fit"  # train on local rows from the global parameters
    EVALUATE = "evaluate"  # evaluate the global parameters on the local held-out rows
    # SecureBoost (vertical/secureboost): the coordinator relays between guest and hosts
    SB_STEP = "sb_step"  # guest: advance the training protocol with the hosts' replies
    SB_SETUP = "sb_setup"  # host: public key, training rows; bin the local features
    SB_GRADIENTS = "sb_gradients"  # host: encrypted (packed) g/h of a new tree
    SB_HISTOGRAMS = "sb_histograms"  # host: node row sets -> encrypted per-bin sums
    SB_SPLIT = "sb_split"  # host: (node rows, feature, bin) -> split record id, left rows
    SB_ROUTE = "sb_route"  # host: (record id, row) queries -> which branch
    QUERY = "query"  # federated analytics: sufficient statistics for one query plan
    # Secure aggregation (fedsilo.privacy.secagg); the masked input rides on FIT.
    SECAGG_KEYS = "secagg-keys"  # advertise two X25519 public keys, signed
    SECAGG_SHARES = "secagg-shares"  # encrypted Shamir shares for each neighbour
    SECAGG_CONFIRM = "secagg-confirm"  # confirm the survivor set to each neighbour (consistency)
    SECAGG_UNMASK = "secagg-unmask"  # reveal the shares that remove the survivors' masks
    # Vertical learning (fedsilo.vertical): the coordinator is arbiter (HE key holder) and relay.
    VERTICAL_SETUP = "vertical_setup"  # role, aligned split, HE public key, algorithm params
    VERTICAL_KEYS = "vertical_keys"  # every party's channel key: pairwise sealed relaying
    VERTICAL_UNMASKED = "vertical_unmasked"  # the arbiter's decryption of a masked value
    HETERO_LR_FORWARD = "hetero_lr_forward"  # host: encrypted partial scores for the guest
    HETERO_LR_RESIDUAL = "hetero_lr_residual"  # guest: encrypted residual, masked gradient
    HETERO_LR_GRADIENT = "hetero_lr_gradient"  # host: masked encrypted gradient, loss share
    HETERO_LR_UPDATE = "hetero_lr_update"  # masked plaintext gradient back to its owner
    HETERO_LR_LOSS = "hetero_lr_loss"  # guest: masked encrypted epoch loss
    HETERO_LR_PREDICT = "hetero_lr_predict"  # partial scores on the held-out rows
    # Vertical job runner (fedsilo.vertical.runner/agent): PSI relayed by the coordinator.
    PSI_OPEN = "psi_open"  # the party's job entry: load its own table; sizes + channel key
    PSI_REQUEST = "psi_request"  # guest (PSI client): channel keys -> one request per host
    PSI_SETUP = "psi_setup"  # host (PSI server): the guest's request -> setup + response
    PSI_INTERSECT = "psi_intersect"  # guest: setups + responses -> sealed finish per host
    PSI_FINISH = "psi_finish"  # host: the guest's sealed finish -> its aligned rows
    VERTICAL_SAVE = "vertical_save"  # each party keeps (and fingerprints) its own model part
    # Vertical scoring (fedsilo.vertical.scoring): saved parts score new, PSI-aligned customers.
    VERTICAL_SCORE_SETUP = "vertical_score_setup"  # load own saved part; HE key (hetero LR)
    VERTICAL_PREDICTIONS = "vertical_predictions"  # guest: keep the scores of the new customers
    VERTICAL_IMPORTANCE = "vertical_importance"  # a party's feature importance, named if it allows


@dataclass(frozen=True)
class Fault:
    """Why a party could not answer a task: an error code and a message for people."""

    code: ErrorCode
    message: str

    @classmethod
    def of(cls, exc: FedsiloError) -> Fault:
        return cls(exc.code, str(exc))

    def exception(self) -> FedsiloError:
        """The error the party raised, rebuilt from its code."""
        return error_for(self.code, self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Message:
    kind: TaskKind
    job_id: str
    round: int
    sender: str
    body: dict[str, Any] = field(default_factory=dict)
    arrays: Arrays = field(default_factory=dict)
    fault: Fault | None = None  # set on an error reply (then body and arrays are empty)
    anchor: dict[str, Any] | None = None  # a party's signed audit-log head (replies only)

    @property
    def error(self) -> str | None:
        """The party's error text, when the reply reports a failure."""
        return None if self.fault is None else self.fault.message

    @property
    def error_code(self) -> ErrorCode | None:
        """The error code, when the reply reports a failure."""
        return None if self.fault is None else self.fault.code

    def encode(self) -> bytes:
        header = {
            "version": SCHEMA_VERSION,
            "kind": self.kind.value,
            "job_id": self.job_id,
            "round": self.round,
            "sender": self.sender,
            "body": self.body,
            "arrays": list(self.arrays),  # safetensors does not keep insertion order
        }
        if self.fault is not None:
            header["error"] = {"code": self.fault.code.value, "message": self.fault.message}
        if self.anchor is not None:
            header["anchor"] = self.anchor
        text = json.dumps(header, sort_keys=True, allow_nan=False, separators=(",", ":"))
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        return bytes(st_save(arrays, metadata={"fedsilo": text}))

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
        if len(data) > max_bytes:
            raise ProtocolError(
                f"message of {len(data):,} bytes exceeds the {max_bytes:,}-byte limit"
            )
        try:
            header_len = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
            try:  # the fast path: no NaN or infinity anywhere in the header
                header, finite = _FINITE.decode(meta["fedsilo"]), True
            except _NonFinite:  # parse it again to say which field
                header, finite = json.loads(meta["fedsilo"]), False
            loaded = st_load(data)
            order = [str(name) for name in header.get("arrays", sorted(loaded))]
            if sorted(order) != sorted(loaded):
                raise ValueError("array names in the header and the payload differ")
            arrays = {name: loaded[name] for name in order}
        except (SafetensorError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"malformed message: {exc}") from None
        if header.get("version") != SCHEMA_VERSION:
            raise ProtocolError(
                f"message schema version {header.get('version')!r}, expected {SCHEMA_VERSION!r}: "
                "coordinator and party run different fedsilo versions"
            )
        try:
            kind = TaskKind(header["kind"])
            error = header.get("error")
            fault = (
                None if error is None else Fault(ErrorCode(error["code"]), str(error["message"]))
            )
            anchor = header.get("anchor")
            if anchor is not None and not isinstance(anchor, dict):
                raise ValueError("'anchor' must be an object")
            msg = cls(
                kind=kind,
                job_id=str(header["job_id"]),
                round=int(header["round"]),
                sender=str(header["sender"]),
                body=dict(header["body"]),
                arrays=arrays,
                fault=fault,
                anchor=anchor,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(f"malformed message header: {exc}") from None
        for name, arr in arrays.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ProtocolError(
                    f"array {name!r} from {msg.sender!r} has NaN or infinite values "
                    f"({msg.kind.value} message, round {msg.round})"
                )
        bad = None if finite else _non_finite(msg.body, "")
        if bad is not None:
            raise ProtocolError(f"{origin(msg)} field {bad!r} is NaN or infinite")
        return msg


def origin(msg: Message, where: str = "") -> str:
    """Who sent ``msg``, in which round, of which kind: the prefix of every body refusal.

    ``where`` (e.g. "party 'bank-a'") replaces the sender, for the party side.
    """
    who = where or ("coordinator" if msg.sender == "coordinator" else f"party {msg.sender!r}")
    return f"{who} round {msg.round}: {msg.kind.value}"


class _NonFinite(ValueError):
    """A NaN, an infinity or a float that overflows, met while parsing a header."""


def _refuse_constant(token: str) -> float:
    raise _NonFinite(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise _NonFinite(text)
    return value


# Refuses non-finite numbers as it parses, so a finite header (every honest one) is not walked
# again; only a header that holds one is walked, to name the field (:func:`_non_finite`).
_FINITE = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _non_finite(value: object, path: str) -> str | None:
    """The path of the first NaN or infinite number in a decoded JSON value, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list, float)):  # the path is built only where it may be needed
                found = _non_finite(v, f"{path}.{k}" if path else str(k))
                if found is not None:
                    return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (dict, list, float)):
                found = _non_finite(v, f"{path}[{i}]" if path else f"[{i}]")
                if found is not None:
                    return found
    return None


def with_anchor(data: bytes, anchor: dict[str, Any]) -> bytes:
    """``data`` (an encoded message) with ``anchor`` in its header; the arrays are not copied.

    A safetensors file is an 8-byte header length, the JSON header (tensor offsets are relative
    to the end of the header, our header rides in its ``__metadata__``) and the tensor bytes, so
    only the JSON header is rewritten.
    """
    try:
        header_len = int.from_bytes(data[:8], "little")
        outer = json.loads(data[8 : 8 + header_len])
        meta = outer["__metadata__"]
        inner = json.loads(meta["fedsilo"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
    inner["anchor"] = anchor
    meta["fedsilo"] = json.dumps(inner, sort_keys=True, allow_nan=False, separators=(",", ":"))
    text = json.dumps(outer, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + header_len :]
