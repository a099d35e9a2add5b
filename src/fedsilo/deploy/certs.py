"""A consortium's certificates: one CA, a server certificate, one client certificate per party.

The consortium (or whoever runs the coordinator) creates a private certificate authority once
with :func:`init_ca`, then issues with :func:`issue`:

- a **server** certificate for the coordinator: subject alternative names from ``hosts`` (DNS
  names and IP addresses the parties dial), extended key usage ``serverAuth``;
- a **client** certificate for an admin or a tool (``fedsilo submit``, ``status``, ``query
  --server`` under mutual TLS): extended key usage ``clientAuth``, no secure-aggregation
  identity, not in the roster;
- a **party** certificate per organization: common name = the party's name (the server matches
  it to the party name under mutual TLS), extended key usage ``clientAuth``; beside it the
  party's secure-aggregation **identity** (:mod:`fedsilo.privacy.secagg.identity`):
  ``<name>.identity.key`` (Ed25519, PKCS#8 PEM, mode 0600) and its public key added to
  ``identities.toml`` in the CA directory, the consortium's roster. Give every party the
  roster together with ``ca.pem``; a party checks its peers' signed key advertisements
  against its own copy.

Keys are ECDSA on P-256 (accepted by gRPC's BoringSSL), written unencrypted in PKCS#8 PEM with
file mode 0600: gRPC needs the plain key, so protect the file instead. Files are never
overwritten unless ``force=True``. Revocation is the server's revoked-party list, not CRLs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsilo.errors import ConfigError
from fedsilo.privacy.secagg.identity import add_to_roster, write_identity_key
from fedsilo.privacy.secagg.keys import identity_public, new_identity_key

__all__ = ["CA_CERT", "CA_KEY", "ROSTER", "CertPair", "common_name", "init_ca", "issue"]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
ROSTER = "identities.toml"  # party name -> Ed25519 public key (secure-aggregation identities)
KEY_MODE = 0o600
# Certificates start a few minutes in the past so a peer whose clock lags still accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # the party-name rule of the job config


@dataclass(frozen=True)
class CertPair:
    """Where a certificate (PEM) and its private key (PEM, mode 0600) were written."""

    cert: Path
    key: Path


def init_ca(
    out_dir: Path, *, name: str = "fedsilo consortium", days: int = 3650, force: bool = False
) -> CertPair:
    """Create a self-signed CA in ``out_dir`` (``ca.pem``, ``ca.key``)."""
    out_dir = Path(out_dir)
    _check_days(days)
    if not name.strip():
        raise ConfigError("the CA name must not be empty")
    pair = CertPair(out_dir / CA_CERT, out_dir / CA_KEY)
    _refuse_overwrite(pair, force)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pair, cert, key)
    return pair


def issue(
    ca_dir: Path,
    out_dir: Path,
    name: str,
    *,
    kind: Literal["server", "party", "client"],
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
    force: bool = False,
) -> CertPair:
    """Issue ``<name>.pem`` + ``<name>.key`` in ``out_dir``, signed by the CA in ``ca_dir``.

    ``kind="server"``: SANs from ``hosts`` (IP literals become IP SANs), EKU serverAuth.
    ``kind="party"``: common name = ``name`` (the party's name), EKU clientAuth; also the
    party's identity key ``<name>.identity.key`` and its entry in ``ca_dir/identities.toml``.
    ``kind="client"``: EKU clientAuth only (an admin's or a tool's): no identity, no roster
    entry, so it never counts as a party of a secure-aggregation round.
    """
    if kind not in ("server", "party", "client"):
        raise ConfigError(f"certificate kind must be 'server', 'party' or 'client', got {kind!r}")
    if not _NAME.fullmatch(name) or len(name) > 64:
        raise ConfigError(
            f"certificate name {name!r} is not usable: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit (for a party: exactly its party name)"
        )
    _check_days(days)
    ca_cert, ca_key = _load_ca(Path(ca_dir))
    out_dir = Path(out_dir)
    pair = CertPair(out_dir / f"{name}.pem", out_dir / f"{name}.key")
    _refuse_overwrite(pair, force)

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if kind == "server":
        if not hosts:
            raise ConfigError(
                "a server certificate needs at least one host (DNS name or IP address) that "
                "parties dial, e.g. --host coordinator.example.org"
            )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if kind == "party":
        identity = out_dir / f"{name}.identity.key"
        if identity.exists() and not force:
            raise ConfigError(f"{identity} already exists; pass force=True (--force) to replace it")
    _write(pair, builder.sign(ca_key, hashes.SHA256()), key)
    if kind == "party":
        signing = new_identity_key()
        write_identity_key(identity, signing)
        add_to_roster(Path(ca_dir) / ROSTER, name, identity_public(signing))
    return pair


def common_name(cert_pem: bytes) -> str:
    """The subject common name of a PEM certificate (a party certificate's party name)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ConfigError(f"certificate has {len(names)} common names, expected exactly one")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


# --------------------------------------------------------------------------- helpers


def _check_days(days: int) -> None:
    if days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {days}")


def _san(host: str) -> x509.GeneralName:
    host = host.strip()
    if not host:
        raise ConfigError("an empty host name cannot go into a server certificate")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _refuse_overwrite(pair: CertPair, force: bool) -> None:
    if force:
        return
    for path in (pair.cert, pair.key):
        if path.exists():
            raise ConfigError(
                f"{path} already exists; refusing to overwrite it (pass force=True / --force "
                "to replace it)"
            )


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    for path in (cert_path, key_path):
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: create the CA first with `fedsilo certs init {ca_dir}`"
            )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{cert_path} is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key (fedsilo CAs use ECDSA P-256)")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConfigError(f"{key_path} does not belong to the certificate {cert_path}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigError(f"{cert_path} is not a CA certificate (basicConstraints CA:TRUE)")
    return cert, key


def _write(pair: CertPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pair.cert.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(pair.key, key_pem, KEY_MODE)
    _atomic_write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed the mode os.open was given
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
