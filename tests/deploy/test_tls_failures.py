"""A party whose TLS handshake is refused says why (unknown CA, expired, name) and stops.

A real server (in this process, real TLS on 127.0.0.1) and a real :class:`PartyProcess`
dialling it with a bad certificate on one side or the other; the party must give up after
``tls_attempts`` with a :class:`PartyRefusedError` naming the problem and the fix, never
loop as "coordinator unreachable". Admin commands (``fedsilo status`` in its own process)
refused for want of a client certificate say which options to pass, and only then.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fedsilo.deploy.certs import init_ca, issue
from fedsilo.deploy.config import PartyProcessConfig, ServerConfig, TlsConfig, token_sha256
from fedsilo.deploy.config import RegisteredParty as Registered
from fedsilo.deploy.party_process import PartyProcess
from fedsilo.deploy.server import Server
from fedsilo.errors import PartyRefusedError
from tests.deploy.harness import SOURCES, free_port, running

NAME = "org-a"


class NoWork:
    def handle(self, data: bytes) -> bytes:
        raise AssertionError("no task should reach a party that cannot connect")


def reissue(ca_dir: Path, cert: Path, *, days_from_now: tuple[int, int]) -> None:
    """Sign ``cert`` again with the same key, valid only in the given day window."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca_cert.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days_from_now[0]))
        .not_valid_after(now + dt.timedelta(days=days_from_now[1]))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    signed = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    cert.write_bytes(signed.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca")
    issue(tmp_path / "ca", tmp_path / "certs", "server", kind="server")
    issue(tmp_path / "ca", tmp_path / "certs", NAME, kind="party")
    init_ca(tmp_path / "foreign", name="some other consortium")
    issue(tmp_path / "foreign", tmp_path / "foreign", NAME, kind="party")
    issue(tmp_path / "foreign", tmp_path / "foreign", "server", kind="server")
    return tmp_path


@pytest.fixture
def server(pki: Path) -> Iterator[Server]:
    yield from _server(pki, pki / "certs")


def _server(pki: Path, certs: Path) -> Iterator[Server]:
    config = ServerConfig(
        listen=f"127.0.0.1:{free_port()}",
        run_dir=pki / "server",
        admin_token_sha256=token_sha256("admin"),
        tls=TlsConfig(
            cert=certs / "server.pem", key=certs / "server.key", client_ca=pki / "ca" / "ca.pem"
        ),
        parties=[Registered(name=NAME, token_sha256=token_sha256("t"))],
    )
    with running(config) as srv:
        yield srv


def _party(address: str, pki: Path, **files: Path | str | None) -> tuple[PartyProcess, list[float]]:
    """A party dialling ``address`` with 3 TLS attempts, and the waits it takes between
    attempts; it stops itself after 8 waits (a party that never gives up fails a test that
    expects it to, rather than hanging it)."""
    certs = pki / "certs"
    config = PartyProcessConfig(
        name=NAME,
        server=address,
        token="t",
        data=pki / "unused.csv",
        ca=files.get("ca", pki / "ca" / "ca.pem"),
        cert=files.get("cert", certs / f"{NAME}.pem"),
        key=files.get("key", certs / f"{NAME}.key"),
        server_name=files.get("server_name"),
        tls_attempts=3,
    )
    waits: list[float] = []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) >= 8:
            party.stop()
        return False

    party = PartyProcess(config, NoWork(), sleep=sleep)
    return party, waits


def _refused(server: Server, pki: Path, **files: Path | str | None) -> tuple[str, list[float]]:
    """Run the party to its end; the error text and the waits it took between attempts."""
    party, waits = _party(f"127.0.0.1:{server.port}", pki, **files)
    with pytest.raises(PartyRefusedError) as info:
        party.run()
    return str(info.value), waits


def test_party_with_a_foreign_ca_certificate_stops_naming_the_unknown_ca(
    server: Server, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = pki / "foreign"
    with caplog.at_level(logging.WARNING):
        text, waits = _refused(
            server, pki, cert=foreign / f"{NAME}.pem", key=foreign / f"{NAME}.key"
        )
    assert "TLS handshake refused 3 times" in text
    assert "this party's certificate" in text and "unknown CA" in text
    assert "some other consortium" not in text or "not signed by the consortium's CA" in text
    assert len(waits) == 2  # bounded: 3 attempts, 2 waits between them
    assert "unreachable" not in caplog.text


def test_party_with_an_expired_certificate_stops_naming_the_expiry(
    server: Server, pki: Path
) -> None:
    reissue(pki / "ca", pki / "certs" / f"{NAME}.pem", days_from_now=(-30, -1))
    text, _ = _refused(server, pki)
    assert "this party's certificate" in text and "expired on" in text
    assert "fedsilo certs issue" in text


def test_party_that_does_not_trust_the_server_ca_names_it(server: Server, pki: Path) -> None:
    text, _ = _refused(server, pki, ca=pki / "foreign" / "ca.pem")
    assert "the coordinator's certificate" in text and "unknown CA" in text


def test_server_certificate_for_another_name_is_a_name_mismatch(server: Server, pki: Path) -> None:
    text, _ = _refused(server, pki, server_name="coordinator.example.org")
    assert "name mismatch" in text and "server_name" in text


def test_expired_server_certificate_is_reported_as_expired(pki: Path) -> None:
    reissue(pki / "ca", pki / "certs" / "server.pem", days_from_now=(-30, -1))
    for srv in _server(pki, pki / "certs"):
        text, _ = _refused(srv, pki)
        assert "the coordinator's certificate expired on" in text


def test_party_without_a_client_certificate_under_mtls_stops_naming_cert_and_key(
    server: Server, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        text, waits = _refused(server, pki, cert=None, key=None)

    assert "TLS handshake refused 3 times" in text
    assert "requires a client certificate (mutual TLS) and none was given" in text
    assert "set `cert` and `key` in party.toml" in text and "--kind party" in text
    assert len(waits) == 2
    assert "Socket closed" not in text and "unreachable" not in caplog.text
    # each refusal before the last is logged with the same fix
    assert caplog.text.count("`cert` and `key` in party.toml") == 2


def test_party_without_a_client_certificate_dialling_a_stopped_server_keeps_retrying(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    party, waits = _party(f"127.0.0.1:{free_port()}", pki, cert=None, key=None)

    with caplog.at_level(logging.WARNING):
        party.run()  # no PartyRefusedError: a server that is down is not a TLS refusal

    assert len(waits) == 8  # past tls_attempts (3), until it stopped itself
    assert caplog.text.count("coordinator unreachable") == 8
    assert "client certificate" not in caplog.text and "TLS handshake" not in caplog.text


def test_a_missing_ca_names_where_each_kind_of_caller_gives_it() -> None:
    from fedsilo.deploy.channel import open_channel
    from fedsilo.deploy.client import AdminClient
    from fedsilo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"with: set `ca` in party\.toml \(or pass --insecure"):
        open_channel("127.0.0.1:1", ca=None)
    with pytest.raises(ConfigError, match=r"with: pass --ca CA\.pem \(the consortium CA"):
        AdminClient("127.0.0.1:1", "token", ca=None)


def _admin_cli(address: str, *tls: str) -> subprocess.CompletedProcess[str]:
    """``fedsilo status`` as an operator types it, in its own process."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli", "status", "--server", address, *tls],
        capture_output=True,
        text=True,
        env={**env, "FEDSILO_ADMIN_TOKEN": "admin", "PYTHONPATH": SOURCES},
        timeout=120,
        check=False,
    )


def test_status_without_a_client_certificate_under_mtls_says_to_pass_cert_and_key(
    server: Server, pki: Path
) -> None:
    issue(pki / "ca", pki / "certs", "admin", kind="client")
    ca = ["--ca", str(pki / "ca" / "ca.pem")]

    refused = _admin_cli(f"127.0.0.1:{server.port}", *ca)

    assert refused.returncode == 2, refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("AdminCallError")]
    assert "requires a client certificate (mutual TLS)" in line
    assert "--cert ADMIN.pem --key ADMIN.key" in line
    assert "Socket closed" not in refused.stderr and "Traceback" not in refused.stderr
    # the options it names are the real ones: passing them, the same command works
    cert = ["--cert", str(pki / "certs" / "admin.pem"), "--key", str(pki / "certs" / "admin.key")]
    ok = _admin_cli(f"127.0.0.1:{server.port}", *ca, *cert)
    assert ok.returncode == 0, ok.stderr
    assert NAME in ok.stdout


def test_status_to_a_stopped_server_is_not_blamed_on_a_missing_certificate(pki: Path) -> None:
    down = _admin_cli(f"127.0.0.1:{free_port()}", "--ca", str(pki / "ca" / "ca.pem"))

    assert down.returncode == 2, down.stderr
    assert "AdminCallError" in down.stderr and "(UNAVAILABLE)" in down.stderr
    assert "client certificate" not in down.stderr and "Traceback" not in down.stderr


def test_status_with_a_certificate_but_no_key_is_refused_before_dialling(pki: Path) -> None:
    half = ["--ca", str(pki / "ca" / "ca.pem"), "--cert", str(pki / "certs" / f"{NAME}.pem")]

    result = _admin_cli(f"127.0.0.1:{free_port()}", *half)

    assert result.returncode == 2, result.stderr  # gRPC had aborted the process (SIGABRT)
    assert "pass --cert CERT.pem and --key KEY.pem together" in result.stderr


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The admin command's only output: one error line (exit 2, no traceback, no gRPC text)."""
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("AdminCallError: status on 127.0.0.1:"), line
    for raw in ("UNAVAILABLE", "SSL_ERROR", "CERTIFICATE_VERIFY_FAILED", "Peer name", "party.toml"):
        assert raw not in line, line
    return line


def test_status_with_a_ca_that_did_not_sign_the_server_certificate_names_the_unknown_ca(
    server: Server, pki: Path
) -> None:
    line = _one_error_line(
        _admin_cli(f"127.0.0.1:{server.port}", "--ca", str(pki / "foreign" / "ca.pem"))
    )

    assert "the coordinator's certificate" in line and "unknown CA" in line
    assert "'some other consortium'" in line  # the CA it was checked with, by name
    assert "Fix: pass the consortium's ca.pem with --ca" in line


def test_status_dialling_a_name_not_on_the_server_certificate_names_the_mismatch(
    server: Server, pki: Path
) -> None:
    tls = ["--ca", str(pki / "ca" / "ca.pem"), "--server-name", "coordinator.example.org"]

    line = _one_error_line(_admin_cli(f"127.0.0.1:{server.port}", *tls))

    assert "not 'coordinator.example.org': name mismatch" in line
    assert "dial one of those names in --server" in line and "with --server-name" in line


def test_status_to_a_server_with_an_expired_certificate_names_the_expiry(pki: Path) -> None:
    issue(pki / "ca", pki / "certs", "admin", kind="client")
    reissue(pki / "ca", pki / "certs" / "server.pem", days_from_now=(-30, -1))
    tls = ["--ca", str(pki / "ca" / "ca.pem")]
    tls += ["--cert", str(pki / "certs" / "admin.pem"), "--key", str(pki / "certs" / "admin.key")]
    for srv in _server(pki, pki / "certs"):
        line = _one_error_line(_admin_cli(f"127.0.0.1:{srv.port}", *tls))

        assert "the coordinator's certificate expired on" in line
        assert "fedsilo certs issue CA_DIR server --kind server" in line


def test_status_with_an_expired_admin_certificate_names_it(server: Server, pki: Path) -> None:
    issue(pki / "ca", pki / "certs", "admin", kind="client")
    reissue(pki / "ca", pki / "certs" / "admin.pem", days_from_now=(-30, -1))
    tls = ["--ca", str(pki / "ca" / "ca.pem")]
    tls += ["--cert", str(pki / "certs" / "admin.pem"), "--key", str(pki / "certs" / "admin.key")]

    line = _one_error_line(_admin_cli(f"127.0.0.1:{server.port}", *tls))

    assert "the admin's certificate (--cert, CN 'admin') expired on" in line
    assert "`fedsilo certs issue CA_DIR admin --kind client`" in line
