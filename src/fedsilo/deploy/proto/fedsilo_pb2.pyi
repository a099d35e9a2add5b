from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequest(_message.Message):
    __slots__ = ("schema_version", "party")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    party: str
    def __init__(self, schema_version: _Optional[int] = ..., party: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "job_id", "round", "kind", "payload", "max_reply_bytes")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLY_BYTES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    job_id: str
    round: int
    kind: str
    payload: bytes
    max_reply_bytes: int
    def __init__(self, task_id: _Optional[str] = ..., job_id: _Optional[str] = ..., round: _Optional[int] = ..., kind: _Optional[str] = ..., payload: _Optional[bytes] = ..., max_reply_bytes: _Optional[int] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("schema_version", "party", "task_id", "payload", "total_bytes")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    party: str
    task_id: str
    payload: bytes
    total_bytes: int
    def __init__(self, schema_version: _Optional[int] = ..., party: _Optional[str] = ..., task_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: bool = ..., reason: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("job_toml", "restart_job_id")
    JOB_TOML_FIELD_NUMBER: _ClassVar[int]
    RESTART_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_toml: str
    restart_job_id: str
    def __init__(self, job_toml: _Optional[str] = ..., restart_job_id: _Optional[str] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "name", "status", "round", "rounds", "error", "run_dir", "kind", "metrics", "failures", "epsilon", "delta", "round_s")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FailuresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ROUND_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    status: str
    round: int
    rounds: int
    error: str
    run_dir: str
    kind: str
    metrics: _containers.ScalarMap[str, float]
    failures: _containers.ScalarMap[str, str]
    epsilon: float
    delta: float
    round_s: float
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., round: _Optional[int] = ..., rounds: _Optional[int] = ..., error: _Optional[str] = ..., run_dir: _Optional[str] = ..., kind: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., failures: _Optional[_Mapping[str, str]] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., round_s: _Optional[float] = ...) -> None: ...

class PartyStatus(_message.Message):
    __slots__ = ("name", "online", "last_seen_s_ago", "refused_calls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_AGO_FIELD_NUMBER: _ClassVar[int]
    REFUSED_CALLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    online: bool
    last_seen_s_ago: float
    refused_calls: int
    def __init__(self, name: _Optional[str] = ..., online: bool = ..., last_seen_s_ago: _Optional[float] = ..., refused_calls: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("jobs", "parties")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    parties: _containers.RepeatedCompositeFieldContainer[PartyStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ..., parties: _Optional[_Iterable[_Union[PartyStatus, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("job_toml", "sql")
    JOB_TOML_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    job_toml: str
    sql: str
    def __init__(self, job_toml: _Optional[str] = ..., sql: _Optional[str] = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...
