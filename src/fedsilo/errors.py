"""Every error fedsilo raises on purpose, in one tree, and the code each one has on the wire.

Messages are written for people: they name the party, the file, the column, the
round or the config key involved, and say what to do next.

::

    FedsiloError               internal      (also: any unexpected exception at a party)
    ├── ConfigError            config        job/party TOML or Python config is invalid
    │   ├── UnsupportedError   unsupported   a SQL construct, task kind or option fedsilo
    │   │                                    (or this party) does not do
    │   └── MissingExtraError  missing_extra the job needs an optional extra that is not
    │                                        installed (the message says `pip install ...`)
    ├── DataError              data          a party's data cannot be used as it is
    │   ├── SchemaError        schema        columns or types disagree with the shared schema
    │   └── MissingValueError  missing_values  missing values and no imputation policy allows them
    ├── ModelError             model         unknown model name, bad import path, shape mismatch
    ├── AggregationError       aggregation   updates cannot be combined (too few, wrong shapes)
    ├── StoreError             store         the job store or a round checkpoint cannot be used
    ├── ProtocolError          bad_request   a message is malformed, oversized or out of sequence
    │   ├── NotReadyError      not_ready     a task arrived before the setup it needs
    │   └── RoundFailedError   round_failed  a round could not gather enough valid replies
    ├── RefusedError           refused       a party's own policy forbids what a task asks
    │   └── BudgetExhaustedError  budget_exhausted  it would exceed the party's privacy budget
    ├── LedgerError            ledger        a party's privacy ledger cannot be opened or is not its
    ├── AuditError             audit         a party's audit log is missing, unreadable, broken,
    │                                        or disagrees with a signed anchor of its head
    ├── AdminCallError         admin_call    the server refused or failed an admin call
    └── PartyRefusedError      party_refused the coordinator refused a party's credentials/version

Across the wire (:mod:`fedsilo.protocol`) an error travels as ``{code, message}``: the code is
the :class:`ErrorCode` of the raised class, never its Python name, and the receiver rebuilds the
error with :func:`error_for` (``error_for(ErrorCode.NOT_READY, text)`` is a
:class:`NotReadyError`). Every code belongs to exactly one class.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.Enum):
    """What kind of failure an error reply reports; the only error identity on the wire."""

    INTERNAL = "internal"
    CONFIG = "config"
    UNSUPPORTED = "unsupported"
    MISSING_EXTRA = "missing_extra"
    DATA = "data"
    SCHEMA = "schema"
    MISSING_VALUES = "missing_values"
    MODEL = "model"
    AGGREGATION = "aggregation"
    STORE = "store"
    BAD_REQUEST = "bad_request"
    NOT_READY = "not_ready"
    ROUND_FAILED = "round_failed"
    REFUSED = "refused"
    BUDGET_EXHAUSTED = "budget_exhausted"
    LEDGER = "ledger"
    AUDIT = "audit"
    ADMIN_CALL = "admin_call"
    PARTY_REFUSED = "party_refused"


class FedsiloError(Exception):
    """Base class of every error fedsilo raises deliberately."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL


class ConfigError(FedsiloError):
    """The job or party configuration is invalid."""

    code = ErrorCode.CONFIG


class UnsupportedError(ConfigError):
    """Asked for what fedsilo, or this party, does not do: a SQL construct outside the subset,
    a column that is not public, a task kind the party's role does not answer."""

    code = ErrorCode.UNSUPPORTED


class MissingExtraError(ConfigError):
    """The job needs an optional extra (``pip install 'fedsilo[vertical]'``, ...) that is not
    installed here (:mod:`fedsilo.extras`)."""

    code = ErrorCode.MISSING_EXTRA


class DataError(FedsiloError):
    """A party's data cannot be used as it is."""

    code = ErrorCode.DATA


class SchemaError(DataError):
    """A party's columns or column types disagree with the shared schema."""

    code = ErrorCode.SCHEMA


class MissingValueError(DataError):
    """Data has missing values and the declared policy rejects them."""

    code = ErrorCode.MISSING_VALUES


class ModelError(FedsiloError):
    """A model cannot be built or does not fit the data."""

    code = ErrorCode.MODEL


class AggregationError(FedsiloError):
    """Updates cannot be aggregated."""

    code = ErrorCode.AGGREGATION


class StoreError(FedsiloError):
    """The job store (SQLite) or a round checkpoint file is missing, corrupt or inconsistent."""

    code = ErrorCode.STORE


class ProtocolError(FedsiloError):
    """A message is malformed, oversized, or arrives out of sequence."""

    code = ErrorCode.BAD_REQUEST


class NotReadyError(ProtocolError):
    """A task arrived before the setup it needs (e.g. a party process restarted mid-job)."""

    code = ErrorCode.NOT_READY


class RoundFailedError(ProtocolError):
    """A round could not gather enough valid replies, even after retries."""

    code = ErrorCode.ROUND_FAILED


class RefusedError(FedsiloError):
    """A party refuses a task that its own privacy or data policy forbids."""

    code = ErrorCode.REFUSED


class BudgetExhaustedError(RefusedError):
    """A party refuses a round or a query: its epsilon afterwards would exceed its budget."""

    code = ErrorCode.BUDGET_EXHAUSTED


class LedgerError(FedsiloError):
    """A party's privacy ledger (SQLite) cannot be opened, belongs to another party, or is corrupt."""

    code = ErrorCode.LEDGER


class AuditError(FedsiloError):
    """A party's audit log cannot be read, or its hash chain does not verify."""

    code = ErrorCode.AUDIT


class AdminCallError(FedsiloError):
    """The server refused or failed an admin call (submit, status, query).

    ``transient``: the same call may succeed if made again (the server down, restarting or
    slow to answer), as opposed to a refusal that asking again cannot change (a wrong token,
    a call not permitted, a diagnosed TLS mismatch).
    """

    code = ErrorCode.ADMIN_CALL

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class PartyRefusedError(FedsiloError):
    """The coordinator refused this party's credentials or version; retrying cannot help."""

    code = ErrorCode.PARTY_REFUSED


def _tree(cls: type[FedsiloError]) -> list[type[FedsiloError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


_BY_CODE: dict[ErrorCode, type[FedsiloError]] = {
    c.code: c for c in _tree(FedsiloError) if c.__module__ == __name__
}


def error_for(code: ErrorCode, message: str) -> FedsiloError:
    """The error a reply with ``code`` reports, rebuilt on the receiving side."""
    return _BY_CODE[code](message)
