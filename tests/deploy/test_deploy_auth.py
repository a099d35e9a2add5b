"""Every call is authenticated: wrong token, missing or expired cert, revoked, unknown or spoofed
parties."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from fedsilo.deploy.auth import AUTH_HEADER, PARTY_HEADER, Authenticator, Refusal
from fedsilo.deploy.channel import open_channel
from fedsilo.deploy.client import AdminClient
from fedsilo.deploy.config import RegisteredParty, token_sha256
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


def test_a_request_naming_another_party_than_its_credentials_is_denied(
    server: Deployment,
) -> None:
    """org-a's certificate, header and token, but a Pull request body naming org-b."""
    channel = open_channel(
        server.address,
        ca=server.root / "ca" / "ca.pem",
        cert=server.certs / "org-a.pem",
        key=server.certs / "org-a.key",
    )
    meta = [(PARTY_HEADER, "org-a"), (AUTH_HEADER, f"Bearer {token('org-a')}")]
    try:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.CoordinatorStub(channel).Pull(
                pb.PullRequest(schema_version=WIRE_VERSION, party="org-b"),
                metadata=meta,
                timeout=10,
            )
    finally:
        channel.close()
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "names party 'org-b' but the credentials are for 'org-a'" in info.value.details()


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


class _Context:
    """What :class:`Authenticator` reads from a gRPC call: its metadata (no client cert)."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def _context(*metadata: tuple[str, str]) -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, _Context(list(metadata)))


def _auth(registered_hash: str) -> Authenticator:
    party = RegisteredParty(name="org-a", token_sha256=registered_hash)
    return Authenticator([party], registered_hash, mtls=False)


def test_a_token_is_accepted_only_for_its_whole_hash() -> None:
    """A registered hash that differs from the presented token's only in its last digit."""
    guess = "guessed-token"
    digest = hashlib.sha256(guess.encode()).hexdigest()
    near = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    call = _context((PARTY_HEADER, "org-a"), (AUTH_HEADER, f"Bearer {guess}"))
    with pytest.raises(Refusal, match="missing or wrong token"):
        _auth(near).party(call)
    with pytest.raises(Refusal, match="admin call without the right admin token"):
        _auth(near).admin(call)
    assert _auth(digest).party(call) == "org-a"


def test_a_token_must_come_as_a_bearer_credential() -> None:
    tok = token("org-a")
    auth = _auth(token_sha256(tok))
    for value in (tok, f"Basic {tok}", f"bearer{tok}"):
        with pytest.raises(Refusal, match="missing or wrong token"):
            auth.party(_context((PARTY_HEADER, "org-a"), (AUTH_HEADER, value)))
    assert auth.party(_context((PARTY_HEADER, "org-a"), (AUTH_HEADER, f"Bearer {tok}"))) == "org-a"


def test_a_server_refuses_a_party_without_a_credential_unless_mtls_names_it(tmp_path: Path) -> None:
    """Without a token and without client certificates, anyone could claim the party's name."""
    from fedsilo.deploy.config import ServerConfig, TlsConfig

    bare = {"admin_token_sha256": "0" * 64, "run_dir": tmp_path, "parties": [{"name": "org-a"}]}
    tls = TlsConfig(cert=tmp_path / "s.pem", key=tmp_path / "s.key")
    for config in (bare, bare | {"tls": tls}):
        with pytest.raises(ValidationError, match="parties org-a have no credential"):
            ServerConfig.model_validate(config)
    mtls = tls.model_copy(update={"client_ca": tmp_path / "ca.pem"})
    assert ServerConfig.model_validate(bare | {"tls": mtls}).parties[0].token_sha256 is None


def test_a_party_registered_twice_is_refused(tmp_path: Path) -> None:
    """Two entries for one name (one of them revoked) would leave which one counts to chance."""
    from fedsilo.deploy.config import ServerConfig

    entries = [
        {"name": "org-a", "token_sha256": "1" * 64, "revoked": True},
        {"name": "org-a", "token_sha256": "2" * 64},
    ]
    with pytest.raises(ValidationError, match="party names must be unique; repeated: org-a"):
        ServerConfig.model_validate(
            {"admin_token_sha256": "0" * 64, "run_dir": tmp_path, "parties": entries}
        )
