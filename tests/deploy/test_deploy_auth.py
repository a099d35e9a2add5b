"""Every call is authenticated: wrong token, missing or expired cert, revoked, unknown or spoofed
parties."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsilo.deploy.auth import AUTH_HEADER, PARTY_HEADER
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.client import AdminClient
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc
from fedsilo.deploy.service import WIRE_VERSION
from fedsilo.errors import AdminCallError
from tests.deploy.harness import Deployment, deployment, token

pytestmark = pytest.mark.slow

PARTIES = ("org-a", "org-b", "org-c")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("auth")
    with deployment(root, parties=PARTIES, revoked=("org-c",)) as dep:
        dep.make_pki(extra=("intruder",))
        dep.write_server()
        dep.start_server()
        dep.wait_status(lambda s: True)
        yield dep


def _call(
    dep: Deployment, cert: str | None, party: str, tok: str | None, rpc: str = "Pull"
) -> pb.Task | pb.Ack:
    files = (dep.certs / f"{cert}.pem", dep.certs / f"{cert}.key") if cert else (None, None)
    channel = open_channel(dep.address, ca=dep.root / "ca" / "ca.pem", cert=files[0], key=files[1])
    stub = pb_grpc.CoordinatorStub(channel)
    meta = [(PARTY_HEADER, party)] + ([(AUTH_HEADER, f"Bearer {tok}")] if tok else [])
    try:
        if rpc == "Pull":
            req = pb.PullRequest(schema_version=WIRE_VERSION, party=party)
            return stub.Pull(req, metadata=meta, timeout=10)
        reply = pb.Reply(schema_version=WIRE_VERSION, party=party, task_id="x", payload=b"1")
        return stub.Push(iter([reply]), metadata=meta, timeout=10)
    finally:
        channel.close()


def _refused(dep: Deployment, *args: str | None, rpc: str = "Pull") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(dep, *args, rpc=rpc)  # type: ignore[arg-type]
    return info.value


def test_registered_party_with_cert_and_token_may_poll(server: Deployment) -> None:
    task = _call(server, "org-a", "org-a", token("org-a"))
    assert isinstance(task, pb.Task) and task.task_id == ""  # no job: nothing to do


@pytest.mark.parametrize("rpc", ["Pull", "Push"])
def test_wrong_token_is_unauthenticated(server: Deployment, rpc: str) -> None:
    err = _refused(server, "org-a", "org-a", "not-the-token", rpc=rpc)
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "wrong token" in err.details()


def test_missing_token_is_unauthenticated(server: Deployment) -> None:
    err = _refused(server, "org-a", "org-a", None)
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED


def test_no_client_certificate_under_mtls_cannot_connect(server: Deployment) -> None:
    # The TLS handshake itself fails: the call never reaches the service.
    err = _refused(server, None, "org-a", token("org-a"))
    assert err.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("rpc", ["Pull", "Push"])
def test_revoked_party_is_denied_on_every_call(server: Deployment, rpc: str) -> None:
    err = _refused(server, "org-c", "org-c", token("org-c"), rpc=rpc)
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in err.details()


def _expired_copy(dep: Deployment, party: str) -> str:
    """Re-sign ``party``'s key into a certificate (same CA, same name) that expired yesterday."""
    ca_dir = dep.root / "ca"
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    current = x509.load_pem_x509_certificate((dep.certs / f"{party}.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(ca_cert.subject)
        .public_key(current.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
    )
    for ext in current.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    name = f"{party}-expired"
    (dep.certs / f"{name}.pem").write_bytes(
        builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )
    (dep.certs / f"{name}.key").write_bytes((dep.certs / f"{party}.key").read_bytes())
    return name


def test_expired_party_certificate_cannot_connect(server: Deployment) -> None:
    # Same CA, same party name, right token: only the validity period is wrong.
    expired = _expired_copy(server, "org-a")
    assert _call(server, "org-a", "org-a", token("org-a")).task_id == ""  # the control
    err = _refused(server, expired, "org-a", token("org-a"))
    assert err.code() is grpc.StatusCode.UNAVAILABLE  # the TLS handshake refuses it


def test_certificate_of_another_party_is_denied(server: Deployment) -> None:
    err = _refused(server, "org-b", "org-a", token("org-a"))
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'org-b'" in err.details() and "'org-a'" in err.details()


def test_unregistered_party_is_unauthenticated(server: Deployment) -> None:
    err = _refused(server, "intruder", "intruder", "anything")
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "not registered" in err.details()


def test_admin_calls_need_the_admin_token(server: Deployment) -> None:
    client = AdminClient(
        server.address,
        "wrong",
        ca=server.root / "ca" / "ca.pem",
        cert=server.certs / "admin.pem",
        key=server.certs / "admin.key",
    )
    with pytest.raises(AdminCallError, match="UNAUTHENTICATED"):
        client.status()
    with pytest.raises(AdminCallError, match="UNAUTHENTICATED"):
        client.submit('name = "x"')
    client.close()


def test_server_refuses_to_start_in_plaintext_without_insecure(tmp_path: Path) -> None:
    from fedsilo.deploy.config import ServerConfig
    from fedsilo.deploy.server import Server
    from fedsilo.errors import ConfigError

    config = ServerConfig(admin_token_sha256="0" * 64, run_dir=tmp_path)
    with pytest.raises(ConfigError, match="--insecure"):
        Server(config)
