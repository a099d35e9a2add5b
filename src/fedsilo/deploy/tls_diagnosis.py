"""Why a TLS handshake with the coordinator failed, in words its caller's user can act on.

gRPC reports a refused handshake as ``UNAVAILABLE`` with a low-level SSL string, which looks
like an unreachable server. When a party process or an admin command sees one, it looks for
itself (:func:`diagnose`): it fetches the coordinator's certificate (a TLS connection that
verifies nothing and sends nothing else) and checks it against its own CA file, the clock and
the name it dials; then it checks its own client certificate the same way, or, having none,
whether the server refuses clients without one. The first problem found is the diagnosis, with
the fix. Checks use ``cryptography`` (signature by the CA: ``verify_directly_issued_by``).

The fix names the setting to change where the caller's user gives it (:class:`Wording`): a
party's operator in party.toml (:data:`PARTY_TOML`), an admin on the command line
(:data:`ADMIN_FLAGS`).

A server that requires mutual TLS refuses a client without a certificate by closing the
connection, which gRPC reports only as "Socket closed". :func:`closes_without_client_cert`
tells that apart from a server that is down or speaks no TLS: a TLS 1.3 handshake that
verifies the server with the given CA completes, and the server then closes the connection
without a byte (a server that accepts the client sends its HTTP/2 settings at once).

Threat model: this only explains a refusal; it never relaxes verification. The certificate
fetched here is not trusted for anything.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

HANDSHAKE_MARKERS = ("ssl_error", "handshake failed", "certificate_verify", "peer name")


@dataclass(frozen=True)
class Wording:
    """How a diagnosis names the caller's TLS settings and their fixes; the problems found and
    the sentences around these words are the same for every caller."""

    holder: str  # who holds the CA file and the client certificate
    ca: str  # the setting that names the CA file
    cert: str  # the setting that names the client certificate
    ca_fix: str  # to trust the consortium's CA
    name_fix: str  # after "the certificate is for NAMES, not HOST": to check a name on it
    cert_fix: str  # to give a client certificate and its key
    issue: str  # the command that issues the holder's certificate


#: a party process: its settings are keys of party.toml
PARTY_TOML = Wording(
    holder="this party",
    ca="`ca`",
    cert="`cert`",
    ca_fix="set `ca` in party.toml to the consortium's ca.pem",
    name_fix=(
        "dial one of those names in `server`, or set `server_name` in party.toml to the name "
        "on the certificate"
    ),
    cert_fix=(
        "set `cert` and `key` in party.toml to the certificate the consortium issued to this "
        "party and its key"
    ),
    issue="fedsilo certs issue CA_DIR NAME --kind party",
)

#: an admin command (``submit``, ``status``, ``query --server``): its settings are options
ADMIN_FLAGS = Wording(
    holder="the admin",
    ca="--ca",
    cert="--cert",
    ca_fix="pass the consortium's ca.pem with --ca",
    name_fix=(
        "dial one of those names in --server, or pass the name on the certificate with "
        "--server-name"
    ),
    cert_fix="pass the admin certificate and its key with --cert ADMIN.pem --key ADMIN.key",
    issue="fedsilo certs issue CA_DIR admin --kind client",
)


def is_handshake_failure(details: str) -> bool:
    """Whether gRPC's error text is a refused TLS handshake (not a closed port)."""
    text = details.lower()
    return any(m in text for m in HANDSHAKE_MARKERS) and "connection refused" not in text


def _name(cert: x509.Certificate) -> str:
    found = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else cert.subject.rfc4514_string()


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):  # bad signature, issuer name, key type
        return False
    return True


def _dates(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return (
            f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (now "
            f"{now:%Y-%m-%d %H:%M} UTC)"
        )
    return None


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    return names + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def check_server_certificate(
    cert: x509.Certificate,
    ca: x509.Certificate,
    host: str,
    now: dt.datetime,
    wording: Wording,
) -> str | None:
    """The problem with the coordinator's certificate, seen from this caller, or None."""
    if not _signed_by(cert, ca):
        return (
            f"the coordinator's certificate (CN {_name(cert)!r}, issued by "
            f"{cert.issuer.rfc4514_string()!r}) is not signed by the CA in {wording.holder}'s "
            f"{wording.ca} file (CN {_name(ca)!r}): unknown CA. Fix: {wording.ca_fix}, or ask "
            "the coordinator's operator which CA issued its certificate"
        )
    dates = _dates(cert, now)
    if dates is not None:
        return (
            f"the coordinator's certificate {dates}. Fix: the coordinator's operator issues a "
            "new one (`fedsilo certs issue CA_DIR server --kind server --host ...`); if the "
            "date looks wrong, check this machine's clock"
        )
    names = _dns_names(cert)
    if host not in names:
        return (
            f"the coordinator's certificate is for {', '.join(names) or 'no names'}, not "
            f"{host!r}: name mismatch. Fix: {wording.name_fix}"
        )
    return None


def check_own_certificate(
    cert: x509.Certificate,
    ca: x509.Certificate,
    now: dt.datetime,
    wording: Wording,
) -> str | None:
    """The problem with this caller's client certificate, or None."""
    dates = _dates(cert, now)
    if dates is not None:
        return (
            f"{wording.holder}'s certificate ({wording.cert}, CN {_name(cert)!r}) {dates}, so "
            "the coordinator refuses it. Fix: ask the consortium for a new one "
            f"(`{wording.issue}`); if the date looks wrong, check this machine's clock"
        )
    if not _signed_by(cert, ca):
        return (
            f"{wording.holder}'s certificate ({wording.cert}, issued by "
            f"{cert.issuer.rfc4514_string()!r}) is not signed by the consortium's CA (CN "
            f"{_name(ca)!r}, the {wording.ca} file), so the coordinator refuses it: unknown "
            f"CA. Fix: use the certificate the consortium issued to {wording.holder}"
        )
    return None


def missing_client_certificate(wording: Wording) -> str:
    """The diagnosis when the server refuses a caller that gave no client certificate."""
    return (
        "the coordinator requires a client certificate (mutual TLS) and none was given. Fix: "
        f"{wording.cert_fix} (`{wording.issue}`)"
    )


def fetch_certificate(address: str, timeout_s: float = 5.0) -> x509.Certificate | None:
    """The certificate a TLS server at ``host:port`` presents (unverified), or None."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    return None if der is None else x509.load_der_x509_certificate(der)


def closes_without_client_cert(
    address: str, *, ca: Path, server_name: str | None, timeout_s: float = 5.0
) -> bool:
    """Whether the TLS server at ``host:port``, verified with ``ca``, closes the connection
    right after a TLS 1.3 handshake in which this client gave no certificate (what a server
    requiring mutual TLS does). False when it cannot be reached, does not verify, cannot do
    TLS 1.3, or keeps the connection open."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError):  # an unreadable CA file is reported where it is opened
        return False
    context.minimum_version = ssl.TLSVersion.TLSv1_3  # the refusal comes after the handshake
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=server_name or host) as tls,
        ):
            try:
                return tls.recv(1) == b""
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                return True
            except ssl.SSLError as exc:  # another server may send an alert instead
                return "certificate required" in str(exc).lower()
    except (OSError, ValueError):  # unreachable, no TLS 1.3, unverified, or still open
        return False


def diagnose(
    address: str,
    *,
    ca: Path,
    cert: Path | None,
    server_name: str | None,
    wording: Wording,
    now: dt.datetime | None = None,
) -> str | None:
    """Why the handshake with the coordinator at ``address`` fails, or None if unclear (a
    server that is down, or certificates that fit); the fix is worded for ``wording``'s
    caller. Without a client certificate (``cert`` None), a server that closes the connection
    for want of one (:func:`closes_without_client_cert`) is the diagnosis."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
        own = None if cert is None else x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):  # unreadable files are reported where they are opened
        return None
    served = fetch_certificate(address)
    if served is not None:
        host = server_name or address.rpartition(":")[0].strip("[]")
        problem = check_server_certificate(served, ca_cert, host, now, wording)
        if problem is not None:
            return problem
    if own is not None:
        return check_own_certificate(own, ca_cert, now, wording)
    if closes_without_client_cert(address, ca=ca, server_name=server_name):
        return missing_client_certificate(wording)
    return None
