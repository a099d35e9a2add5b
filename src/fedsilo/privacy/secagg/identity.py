"""A party's long-term signing identity and the roster it checks its peers against.

Bonawitz et al. 2017 (Sec. 6, the malicious setting) authenticate every key advertisement
and every survivor set with a signature under a long-term key that the other parties know
*independently of the server*; otherwise the server could hand a party its own keys in a
neighbour's name and read the shares meant for that neighbour. :class:`Identity` is that key
(Ed25519) plus the **roster**: every party's name and public key, from the party's own
configuration, never from the coordinator.

* In simulation, :func:`simulated_identities` creates one key per party with the party and
  gives every party the same in-memory roster (the stand-in for an enrolment registry).
* In deployment, ``fedsilo certs issue party NAME`` writes ``NAME.identity.key`` (Ed25519,
  PKCS#8 PEM, mode 0600) beside the party's TLS certificate and adds ``NAME``'s public key
  to ``identities.toml``, the consortium's roster, which travels to every party with
  ``ca.pem`` (:mod:`fedsilo.deploy.certs`). ``party.toml`` points at both
  (``[secure_aggregation] identity_key``, ``roster``). Whoever can change a party's copy of
  the roster can impersonate the parties it lists, exactly as whoever can change its
  ``ca.pem`` can impersonate the coordinator: distribute both out of band.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.privacy.secagg import keys
from fedsilo.privacy.secagg.params import ThreatModel


@dataclass(frozen=True)
class Identity:
    """``name``'s signing key, the roster of public keys, and the party's threat model."""

    name: str
    signing_key: Ed25519PrivateKey = field(repr=False)
    roster: Mapping[str, bytes]
    threat: ThreatModel = field(default_factory=ThreatModel)
    # The roster's keys already parsed, shared by every party of one simulation (parsing the
    # whole roster per party costs N^2 key loads); None: parse ``roster`` here.
    parsed_roster: Mapping[str, Ed25519PublicKey] | None = field(
        default=None, repr=False, compare=False
    )

    _keys: Mapping[str, Ed25519PublicKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = self.parsed_roster
        if parsed is None or parsed.keys() != self.roster.keys():
            parsed = parse_roster(self.roster)  # once: every round verifies advertisements
        object.__setattr__(self, "_keys", parsed)
        own = self.roster.get(self.name)
        if own != keys.identity_public(self.signing_key):
            raise ConfigError(
                f"party '{self.name}': its identity key does not match its roster entry; "
                "re-issue the identity or fix the roster"
            )

    def sign(self, message: bytes) -> bytes:
        return keys.sign(self.signing_key, message)

    def verify(self, signer: str, signature: bytes, message: bytes) -> None:
        """Check ``signer``'s signature against the roster (never a key the coordinator sent)."""
        public = self._keys.get(signer)
        if public is None:
            raise ProtocolError(
                f"party '{self.name}' has no identity key for '{signer}' in its roster"
            )
        keys.verify(public, signature, message, signer=signer)


def parse_roster(roster: Mapping[str, bytes]) -> dict[str, Ed25519PublicKey]:
    """Every roster entry as an Ed25519 public key; ConfigError if one is not."""
    try:
        return {n: keys.identity_key(k) for n, k in roster.items()}
    except ValueError:
        raise ConfigError("the identity roster holds a key that is not Ed25519") from None


def simulated_identities(
    names: Iterable[str], threat: ThreatModel | None = None
) -> dict[str, Identity]:
    """One fresh key per simulated party, all sharing one roster (parsed once)."""
    secrets = {n: keys.new_identity_key() for n in names}
    roster = {n: keys.identity_public(k) for n, k in secrets.items()}
    parsed = parse_roster(roster)
    return {
        n: Identity(n, k, roster, threat or ThreatModel(), parsed_roster=parsed)
        for n, k in secrets.items()
    }


def write_identity_key(path: Path, key: Ed25519PrivateKey) -> None:
    raw = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(raw)
    path.chmod(0o600)


def load_identity(
    name: str, key_path: Path, roster_path: Path, threat: ThreatModel | None = None
) -> Identity:
    """A deployed party's identity: its key file and the consortium roster (``name = "hex"``)."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"party '{name}': cannot read its identity key {key_path} ({exc}); create it with "
            f"`fedsilo certs issue party {name}`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"party '{name}': {key_path} is not an Ed25519 private key")
    return Identity(name, key, read_roster(roster_path), threat or ThreatModel())


def read_roster(path: Path) -> dict[str, bytes]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the identity roster {path}: {exc}") from None
    roster: dict[str, bytes] = {}
    for party, value in raw.items():
        try:
            key = bytes.fromhex(str(value))
        except ValueError:
            key = b""
        if len(key) != keys.KEY_BYTES:
            raise ConfigError(
                f"identity roster {path}: party '{party}' needs a 64-digit hex Ed25519 public key"
            )
        roster[party] = key
    return roster


def add_to_roster(path: Path, name: str, public: bytes) -> None:
    """Add or replace ``name``'s public key in the roster file (sorted, one line each)."""
    roster = read_roster(path) if path.exists() else {}
    roster[name] = public
    lines = [f'"{n}" = "{k.hex()}"' for n, k in sorted(roster.items())]
    path.write_text(
        "# fedsilo identity roster: party = Ed25519 public key\n" + "\n".join(lines) + "\n"
    )


def require_identity(name: str, identity: Identity | None) -> Identity:
    """A party without a signing identity and roster cannot take part in secure aggregation."""
    if identity is None:
        raise ConfigError(
            f"party '{name}' has no secure-aggregation identity: give it a signing key and the "
            "roster of the other parties' public keys (party.toml [secure_aggregation] "
            "identity_key and roster; `fedsilo certs issue party NAME` writes both)"
        )
    return identity
