"""Every error fedsilo raises on purpose, in one tree.

Messages are written for people: they name the party, the file, the column, the
round or the config key involved, and say what to do next.

::

    FedsiloError
    ├── ConfigError            job/party TOML or Python config is invalid
    ├── DataError              a party's data cannot be used as it is
    │   ├── SchemaError        columns or types disagree with the shared schema
    │   └── MissingValueError  missing values and no imputation policy allows them
    ├── ModelError             unknown model name, bad import path, shape mismatch
    ├── AggregationError       updates cannot be combined (too few, wrong shapes)
    ├── StoreError             the job store or a round checkpoint cannot be used
    ├── ProtocolError          a message is malformed, oversized or out of sequence
    │   └── RoundFailedError   a round could not gather enough valid replies
    ├── BudgetExhaustedError   a party refuses a round that would exceed its privacy budget
    └── AuditError             a party's audit log is missing, unreadable or its chain broken
"""

from __future__ import annotations


class FedsiloError(Exception):
    """Base class of every error fedsilo raises deliberately."""


class ConfigError(FedsiloError):
    """The job or party configuration is invalid."""


class DataError(FedsiloError):
    """A party's data cannot be used as it is."""


class SchemaError(DataError):
    """A party's columns or column types disagree with the shared schema."""


class MissingValueError(DataError):
    """Data has missing values and the declared policy rejects them."""


class ModelError(FedsiloError):
    """A model cannot be built or does not fit the data."""


class AggregationError(FedsiloError):
    """Updates cannot be aggregated."""


class StoreError(FedsiloError):
    """The job store (SQLite) or a round checkpoint file is missing, corrupt or inconsistent."""


class ProtocolError(FedsiloError):
    """A message is malformed, oversized, or arrives out of sequence."""


class RoundFailedError(ProtocolError):
    """A round could not gather enough valid replies, even after retries."""


class BudgetExhaustedError(FedsiloError):
    """A party refuses a round: its epsilon after the round would exceed its budget."""


class AuditError(FedsiloError):
    """A party's audit log cannot be read, or its hash chain does not verify."""
