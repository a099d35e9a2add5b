"""Certificates: the chain verifies, and gRPC's TLS accepts exactly what it should."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from fedsilo.cli.certs import certs_app
from fedsilo.deploy.certs import CertPair, common_name, init_ca, issue
from fedsilo.errors import ConfigError
from fedsilo.privacy.secagg.identity import load_identity, read_roster

METHOD = "/fedsilo.test.Echo/Who"


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPair]:
    """One CA with a server and two party certificates, and a second, unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    ca = init_ca(root / "ca")
    other = init_ca(root / "other", name="someone else")
    return {
        "ca": ca,
        "server": issue(root / "ca", root / "out", "coordinator", kind="server"),
        "bank-a": issue(root / "ca", root / "out", "bank-a", kind="party"),
        "other-ca": other,
        "other-party": issue(root / "other", root / "other-out", "bank-a", kind="party"),
        "other-server": issue(root / "other", root / "other-out", "coordinator", kind="server"),
        "wrong-host": issue(
            root / "ca", root / "out", "elsewhere", kind="server", hosts=["example.org"]
        ),
    }


# --------------------------------------------------------------------------- the chain


def test_issued_certificates_are_signed_by_the_ca_and_valid_now(pki: dict[str, CertPair]) -> None:
    ca = load(pki["ca"].cert)
    now = dt.datetime.now(dt.UTC)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)  # self-signed
    for name in ("server", "bank-a"):
        cert = load(pki[name].cert)
        cert.verify_directly_issued_by(ca)  # raises unless the CA's key signed it
        assert cert.issuer == ca.subject
        assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        assert dt.timedelta(days=364) < cert.not_valid_after_utc - now <= dt.timedelta(days=365)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    with pytest.raises(Exception, match=r"(?i)signature|issuer"):
        load(pki["other-party"].cert).verify_directly_issued_by(ca)


def test_server_certificate_names_its_hosts_and_is_for_server_auth(
    pki: dict[str, CertPair],
) -> None:
    cert = load(pki["server"].cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_party_certificate_carries_the_party_name_and_is_for_client_auth(
    pki: dict[str, CertPair],
) -> None:
    cert = load(pki["bank-a"].cert)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["bank-a"]
    assert common_name(pki["bank-a"].cert.read_bytes()) == "bank-a"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_keys_are_private_files(pki: dict[str, CertPair]) -> None:
    for pair in (pki["ca"], pki["server"], pki["bank-a"]):
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
        assert pair.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_existing_files_are_not_overwritten_without_force(tmp_path: Path) -> None:
    first = init_ca(tmp_path)
    before = first.cert.read_bytes()
    with pytest.raises(ConfigError, match=r"ca\.pem already exists.*force"):
        init_ca(tmp_path)
    assert first.cert.read_bytes() == before
    issue(tmp_path, tmp_path, "bank-b", kind="party")
    with pytest.raises(ConfigError, match=r"bank-b\.pem already exists"):
        issue(tmp_path, tmp_path, "bank-b", kind="party")
    again = issue(tmp_path, tmp_path, "bank-b", kind="party", force=True)
    load(again.cert).verify_directly_issued_by(load(first.cert))
    assert init_ca(tmp_path, force=True).cert.read_bytes() != before


def test_bad_requests_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca\.pem not found.*fedsilo certs init"):
        issue(tmp_path / "nowhere", tmp_path, "bank-a", kind="party")
    init_ca(tmp_path)
    with pytest.raises(ConfigError, match="not usable"):
        issue(tmp_path, tmp_path, "../escape", kind="party")
    with pytest.raises(ConfigError, match="at least 1 day"):
        issue(tmp_path, tmp_path, "bank-a", kind="party", days=0)
    with pytest.raises(ConfigError, match="at least one host"):
        issue(tmp_path, tmp_path, "srv", kind="server", hosts=())
    other = init_ca(tmp_path / "other")
    (tmp_path / "ca.key").write_bytes(other.key.read_bytes())
    with pytest.raises(ConfigError, match=r"ca\.key does not belong"):
        issue(tmp_path, tmp_path, "bank-a", kind="party")


def test_cli_makes_a_ca_and_certificates(tmp_path: Path) -> None:
    runner = CliRunner()
    ca_dir = tmp_path / "ca"
    result = runner.invoke(certs_app, ["init", str(ca_dir), "--name", "test consortium"])
    assert result.exit_code == 0, result.output
    hosts = ["--host", "fl.example.org", "--host", "10.0.0.5"]
    out = ["--out", str(tmp_path / "srv"), "--days", "30"]
    result = runner.invoke(
        certs_app, ["issue", str(ca_dir), "server", "--kind", "server", *hosts, *out]
    )
    assert result.exit_code == 0, result.output
    cert = load(tmp_path / "srv" / "server.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fl.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    result = runner.invoke(certs_app, ["issue", str(ca_dir), "bank-c", "--kind", "party"])
    assert result.exit_code == 0, result.output
    assert common_name((ca_dir / "bank-c.pem").read_bytes()) == "bank-c"
    assert load(ca_dir / "ca.pem").subject.rfc4514_string() == "CN=test consortium"
    again = runner.invoke(certs_app, ["issue", str(ca_dir), "bank-c", "--kind", "party"])
    assert again.exit_code == 2
    assert "already exists" in again.output


# --------------------------------------------------------------------------- real TLS


def _who(request: bytes, context: grpc.ServicerContext) -> bytes:
    names = context.auth_context().get("x509_common_name", [])
    return b"|".join([request, *names])


@contextmanager
def tls_server(server: CertPair, client_ca: CertPair | None = None) -> Iterator[int]:
    """A gRPC server on 127.0.0.1 that echoes the caller's certificate CN."""
    handler = grpc.method_handlers_generic_handler(
        "fedsilo.test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(_who)}
    )
    srv = grpc.server(ThreadPoolExecutor(max_workers=2))
    srv.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(server.key.read_bytes(), server.cert.read_bytes())],
        root_certificates=None if client_ca is None else client_ca.cert.read_bytes(),
        require_client_auth=client_ca is not None,
    )
    port = srv.add_secure_port("127.0.0.1:0", creds)
    srv.start()
    try:
        yield port
    finally:
        srv.stop(None)


def call(port: int, ca: CertPair, client: CertPair | None = None) -> bytes:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.cert.read_bytes(),
        private_key=None if client is None else client.key.read_bytes(),
        certificate_chain=None if client is None else client.cert.read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        reply: bytes = channel.unary_unary(METHOD)(b"hello", timeout=5)
        return reply


def test_tls_handshake_succeeds_with_the_issued_server_certificate(
    pki: dict[str, CertPair],
) -> None:
    with tls_server(pki["server"]) as port:
        assert call(port, pki["ca"]) == b"hello"


def test_mutual_tls_identifies_the_party_by_common_name(pki: dict[str, CertPair]) -> None:
    with tls_server(pki["server"], client_ca=pki["ca"]) as port:
        assert call(port, pki["ca"], pki["bank-a"]) == b"hello|bank-a"


def test_mutual_tls_refuses_a_client_without_certificate(pki: dict[str, CertPair]) -> None:
    with tls_server(pki["server"], client_ca=pki["ca"]) as port, pytest.raises(grpc.RpcError) as e:
        call(port, pki["ca"])
    assert e.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(
    pki: dict[str, CertPair],
) -> None:
    with tls_server(pki["server"], client_ca=pki["ca"]) as port, pytest.raises(grpc.RpcError) as e:
        call(port, pki["ca"], pki["other-party"])  # same CN "bank-a", wrong issuer
    assert e.value.code() is grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_server_certificate_from_another_ca(pki: dict[str, CertPair]) -> None:
    with tls_server(pki["other-server"]) as port, pytest.raises(grpc.RpcError) as e:
        call(port, pki["ca"])
    assert e.value.code() is grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_server_certificate_for_another_host(pki: dict[str, CertPair]) -> None:
    with tls_server(pki["wrong-host"]) as port, pytest.raises(grpc.RpcError) as e:
        call(port, pki["ca"])
    assert e.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_party_certificate_comes_with_an_identity_key_and_a_roster_entry(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    for party in ("bank-a", "bank-b"):
        issue(tmp_path / "ca", tmp_path / party, party, kind="party")
    key = tmp_path / "bank-a" / "bank-a.identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    roster_path = tmp_path / "ca" / "identities.toml"
    assert sorted(read_roster(roster_path)) == ["bank-a", "bank-b"]
    a = load_identity("bank-a", key, roster_path)
    b = load_identity("bank-b", tmp_path / "bank-b" / "bank-b.identity.key", roster_path)
    b.verify("bank-a", a.sign(b"keys"), b"keys")  # b checks a against its own roster copy
    with pytest.raises(ConfigError, match="does not match its roster entry"):
        load_identity("bank-b", key, roster_path)  # a's key under b's name
    with pytest.raises(ConfigError, match="already exists"):
        issue(tmp_path / "ca", tmp_path / "bank-a", "bank-a", kind="party")


def test_a_client_certificate_is_for_client_auth_and_stays_out_of_the_roster(
    tmp_path: Path,
) -> None:
    """The admin's certificate (make_certs.sh): mutual TLS works, but it is no party."""
    ca = init_ca(tmp_path / "ca")
    issue(tmp_path / "ca", tmp_path / "ca", "bank-a", kind="party")
    result = CliRunner().invoke(
        certs_app, ["issue", str(tmp_path / "ca"), "admin", "--kind", "client"]
    )
    assert result.exit_code == 0, result.output
    assert "identity key" not in result.output and "roster" not in result.output
    admin = CertPair(tmp_path / "ca" / "admin.pem", tmp_path / "ca" / "admin.key")
    eku = load(admin.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert common_name(admin.cert.read_bytes()) == "admin"
    assert not (tmp_path / "ca" / "admin.identity.key").exists()
    assert sorted(read_roster(tmp_path / "ca" / "identities.toml")) == ["bank-a"]
    server = issue(tmp_path / "ca", tmp_path, "server", kind="server")
    with tls_server(server, client_ca=ca) as port:
        assert call(port, ca, client=admin) == b"hello|admin"
    refused = CliRunner().invoke(
        certs_app, ["issue", str(tmp_path / "ca"), "tool", "--kind", "client", "--host", "x"]
    )
    assert refused.exit_code == 2 and "server certificates only" in refused.output
