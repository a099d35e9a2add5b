"""Server and party-process configuration: TOML in, validated pydantic models out.

``server.toml`` (the coordinator)::

    listen = "0.0.0.0:50051"
    run_dir = "runs/server"              # results and state.sqlite go here
    admin_token_sha256 = "<sha256 hex>"  # `fedsilo submit/status` must present the token
    job = "job.toml"                     # optional: run this job at start
    liveness_s = 30                      # a party silent this long (no poll/heartbeat) is lost
    retry_backoff_s = 1.0                # wait before a round's retry, doubling each time
    status_page = "127.0.0.1:8080"       # optional: read-only status page (loopback, admin token)

    [limits]                             # what one party may cost (docs/deploy.md, "Limits")
    calls_per_party = 4                  # concurrent calls, long polls included
    calls_per_s = 200                    # per party; over it: RESOURCE_EXHAUSTED, logged
    auth_failures = 20                   # per source address, one more every 2 s
    reply_size_factor = 1.25             # a fit/evaluate reply: at most 1.25 x task + 1 MiB

    [tls]                                # omit only with `fedsilo server --insecure`
    cert = "certs/server.pem"
    key = "certs/server.key"
    client_ca = "certs/ca.pem"           # optional: require client certs (mTLS), CN = party

    [[parties]]
    name = "bank-a"
    token_sha256 = "<sha256 hex>"        # store hashes only, never tokens
    revoked = false

``party.toml`` (one per organization)::

    name = "bank-a"
    server = "coordinator.example.org:50051"
    token_file = "secrets/bank-a.token"  # or token = "..."
    data = "data/bank_a.csv"
    ca = "certs/ca.pem"
    cert = "certs/bank-a.pem"            # with mTLS
    key = "certs/bank-a.key"
    heartbeat_s = 5                      # "alive" every 5 s, busy or idle
    tls_attempts = 5                     # refused TLS handshakes before it stops, diagnosed
    threads = 1                          # torch threads for its computing; 1 (the default)
                                         # trains as its simulation does, bit for bit

    [privacy]                            # this party's own privacy budget, for everything
    max_epsilon = 3.0                    # refuse any DP release (round, query) past this
    delta = 1e-5                         # the delta its epsilon is counted at
    accounting = "rdp"                   # or "pld"
    ledger = "privacy/bank-a.sqlite"     # its one privacy ledger (training and queries)
    audit_log = "audit/bank-a.jsonl"     # hash-chained log of every reply sent
    [privacy.client_dp]                  # what it accepts in client-DP (DP-FedAvg) rounds
    min_noise_multiplier = 1.0           # least noise multiplier its noise share must give
    max_clip_norm = 1.0                  # refuse a larger clip norm (default: no cap)
    trust_coordinator_noise = false      # refuse rounds where only the coordinator adds noise

    [secure_aggregation]                 # this party's identity and what it assumes
    identity_key = "certs/bank-a.identity.key"   # Ed25519; `fedsilo certs issue party` writes it;
                                         # it also signs the anchors of the audit log
    roster = "certs/identities.toml"     # every party's public identity key (from enrolment)
    dropout_rate = 0.2                   # fraction of a round's parties that may drop out
    corruption_rate = 0.0                # fraction that may collude with the coordinator

    [analytics]                          # optional: answer federated-analytics queries
    [analytics.tables]
    transactions = "data/bank_a_transactions.csv"   # analytics table name -> local file
    [analytics.policy]                   # what queries this party answers at all
    mechanisms = ["gaussian", "laplace"]
    max_query_epsilon = 1.0              # largest epsilon of one query
    allow_exact = false                  # mechanism "none" (exact answers): refused
    min_group_size = 10                  # refuse queries that suppress fewer rows

    [vertical]                           # optional: take part in vertical jobs
    data = "data/bank_a_customers.csv"   # this party's columns; the job names id/label columns
    models = "models"                    # its own model parts: models/<job id>/<name>.*
    score_data = "data/new_customers.csv"   # customers to score (`kind = "vertical-score"`);
                                         # the guest keeps the scores: models/<job id>/predictions.csv
    share_feature_names = false          # importance: by feature name (true) or totals only

``data`` (horizontal training rows) may be left out by a party that only answers vertical
jobs or analytics queries. ``ledger`` defaults to ``privacy-<name>.sqlite`` beside the party's
first data file.

Relative paths are resolved against the directory of the TOML file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from fedsilo.analytics.config import QueryPolicy
from fedsilo.config_base import Strict, read_toml, refuse_keys, validate
from fedsilo.errors import ConfigError
from fedsilo.privacy.accounting import AccountingMethod
from fedsilo.privacy.dp_fedavg import ClientDPPolicy

PARTY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
SHA256_HEX = r"^[0-9a-f]{64}$"


def token_sha256(token: str) -> str:
    """The hash to store in ``server.toml`` for a token (``fedsilo`` never stores tokens)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TlsConfig(Strict):
    """The server's certificate, and the CA that signs party certificates for mTLS."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class RegisteredParty(Strict):
    """An organization allowed to join; its credential is a token hash and/or its cert CN."""

    name: str = Field(min_length=1, max_length=64, pattern=PARTY_NAME)
    token_sha256: str | None = Field(default=None, pattern=SHA256_HEX)
    revoked: bool = False


class LimitsConfig(Strict):
    """What one credentialed party (or one source address) may cost the server.

    Over a limit a call ends with ``RESOURCE_EXHAUSTED`` and the server logs the party's name
    (or the address, for failed authentications). ``reply_size_factor`` bounds a training
    reply by the task's size: a reply is refused while it streams in, once it passes
    ``reply_size_factor`` x the task's bytes plus 1 MiB.
    """

    calls_per_party: int = Field(default=4, ge=2)  # concurrent calls, long polls included
    calls_per_s: float = Field(default=200.0, gt=0)  # sustained rate per party (burst: 2x)
    waiting_polls: int | None = Field(default=None, ge=1)  # all parties; default 2 x parties
    auth_failures: int = Field(default=20, ge=1)  # failed authentications per address ...
    auth_failure_refill_s: float = Field(default=2.0, gt=0)  # ... one more every this often
    reply_size_factor: float = Field(default=1.25, ge=1.0)
    chunk_kb: int = Field(default=1024, ge=16, le=4096)  # replies stream in chunks this size


class ServerConfig(Strict):
    listen: str = "127.0.0.1:50051"
    run_dir: Path = Path("runs/server")
    admin_token_sha256: str = Field(pattern=SHA256_HEX)
    job: Path | None = None
    tls: TlsConfig | None = None
    parties: list[RegisteredParty] = Field(default_factory=list)
    poll_s: float = Field(default=1.0, gt=0, le=60)
    liveness_s: float = Field(default=30.0, gt=0)  # no poll, reply or heartbeat: lost
    retry_backoff_s: float = Field(default=1.0, ge=0)  # before a round's retry, doubling
    wait_for_parties_s: float = Field(default=600.0, gt=0)
    max_message_mb: float = Field(default=256.0, gt=0)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    status_page: str | None = None  # e.g. "127.0.0.1:8080": read-only page, admin token

    @model_validator(mode="after")
    def _credentials(self) -> ServerConfig:
        names = [p.name for p in self.parties]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"party names must be unique; repeated: {', '.join(dupes)}")
        mtls = self.tls is not None and self.tls.client_ca is not None
        bare = [p.name for p in self.parties if p.token_sha256 is None and not mtls]
        if bare:
            raise ValueError(
                f"parties {', '.join(bare)} have no credential: give token_sha256 "
                "(`fedsilo.deploy.config.token_sha256(token)`) or set tls.client_ca for mTLS"
            )
        return self

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.sqlite"

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)


class PartyPrivacyConfig(Strict):
    """The party's own privacy budget (training and queries), its ledger and audit log, and
    the clip norms and noise shares it accepts in client-DP rounds."""

    max_epsilon: float | None = Field(default=None, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    accounting: AccountingMethod = AccountingMethod.RDP
    ledger: Path | None = None  # default: <data file directory>/privacy-<name>.sqlite
    audit_log: Path | None = None
    client_dp: ClientDPPolicy = Field(default_factory=ClientDPPolicy)


class PartySecAggConfig(Strict):
    """The party's secure-aggregation identity and roster, and its own threat model."""

    identity_key: Path | None = None
    roster: Path | None = None
    dropout_rate: float = Field(default=0.2, ge=0, lt=1)
    corruption_rate: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _both(self) -> PartySecAggConfig:
        if (self.identity_key is None) != (self.roster is None):
            raise ValueError("[secure_aggregation] needs both identity_key and roster")
        if self.dropout_rate + self.corruption_rate > 0.9:
            raise ValueError(
                "[secure_aggregation] dropout_rate + corruption_rate must be at most 0.9"
            )
        return self


class PartyAnalyticsConfig(Strict):
    """Which analytics tables this party answers for, from which files, under which policy."""

    tables: dict[str, Path] = Field(default_factory=dict)
    policy: QueryPolicy = Field(default_factory=QueryPolicy)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, raw: Any) -> Any:
        moved = (
            "moved to [privacy]: a party has one budget and one ledger for training and "
            "queries ([privacy] max_epsilon, [privacy] ledger)"
        )
        return refuse_keys(raw, {"ledger": moved, "max_epsilon": moved})


class PartyVerticalConfig(Strict):
    """This party's table for vertical jobs; the job names its ID column, label, features."""

    data: Path | None = None  # CSV or Parquet, one row per customer
    models: Path | None = None  # default: <data file directory>/models-<name>
    score_data: Path | None = None  # new customers, scored by `kind = "vertical-score"` jobs
    share_feature_names: bool = False  # may its feature names appear in the importance


class PartyProcessConfig(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=PARTY_NAME)
    server: str
    data: Path | None = None  # horizontal training data; optional for vertical/analytics only
    token: str | None = None
    token_file: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None  # TLS name to check when it differs from the host dialled
    max_backoff_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=5.0, gt=0)  # keep it well under the server's liveness_s
    tls_attempts: int = Field(default=5, ge=1)  # refused TLS handshakes before the party stops
    threads: int = Field(default=1, ge=1, strict=True)  # torch threads; 1 as a simulated party
    max_message_mb: float = Field(default=256.0, gt=0)
    privacy: PartyPrivacyConfig = Field(default_factory=PartyPrivacyConfig)
    secure_aggregation: PartySecAggConfig = Field(default_factory=PartySecAggConfig)
    analytics: PartyAnalyticsConfig = Field(default_factory=PartyAnalyticsConfig)
    vertical: PartyVerticalConfig = Field(default_factory=PartyVerticalConfig)

    @model_validator(mode="after")
    def _consistent(self) -> PartyProcessConfig:
        vertical = self.vertical.data or self.vertical.score_data
        if self.data is None and vertical is None and not self.analytics.tables:
            raise ValueError(
                "the party has no data: give `data` (horizontal training), [vertical] data "
                "(vertical jobs) and/or [analytics.tables] (queries)"
            )
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return self

    @property
    def ledger_path(self) -> Path:
        """This party's one privacy ledger (SQLite): every DP release, training and queries."""
        if self.privacy.ledger is not None:
            return self.privacy.ledger
        return self._data_dir / f"privacy-{self.name}.sqlite"

    @property
    def _data_dir(self) -> Path:
        first = (
            self.data
            or self.vertical.data
            or self.vertical.score_data
            or next(iter(self.analytics.tables.values()))
        )
        return first.parent

    @property
    def models_dir(self) -> Path:
        """Where this party keeps its own parts of vertical models (one folder per job)."""
        if self.vertical.models is not None:
            return self.vertical.models
        return self._data_dir / f"models-{self.name}"

    def read_token(self) -> str | None:
        if self.token_file is None:
            return self.token
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"party {self.name!r}: token_file {self.token_file} cannot be read: {exc.strerror}"
            ) from None

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)


M = TypeVar("M", bound=BaseModel)

_PATH_KEYS = {
    "run_dir",
    "job",
    "cert",
    "key",
    "client_ca",
    "data",
    "score_data",
    "token_file",
    "ca",
    "audit_log",
    "ledger",
    "models",
    "identity_key",
    "roster",
}


def _path(value: str, base: Path) -> str:
    return value if Path(value).is_absolute() else str(base / value)


def _resolve(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "tables" and isinstance(value, dict):  # [analytics.tables]: name -> file
            out[key] = {k: _path(v, base) if isinstance(v, str) else v for k, v in value.items()}
        elif isinstance(value, dict):
            out[key] = _resolve(value, base)
        elif key in _PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute():
            out[key] = str(base / value)
        else:
            out[key] = value
    return out


def _load(model: type[M], path: Path, what: str) -> M:
    raw = read_toml(path, what=f"{what} file")
    return validate(model, _resolve(raw, path.parent), source=str(path), what=what)


def load_server_config(path: str | Path) -> ServerConfig:
    return _load(ServerConfig, Path(path), "server configuration")


def load_party_config(path: str | Path) -> PartyProcessConfig:
    return _load(PartyProcessConfig, Path(path), "party configuration")
