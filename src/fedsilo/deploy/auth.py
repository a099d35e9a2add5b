"""Who is calling: checked on every gRPC call, before anything else happens.

A party call carries metadata ``x-fedsilo-party: <name>`` and, when the party has a token,
``authorization: Bearer <token>``. Under mTLS the TLS layer has already verified the client
certificate against ``tls.client_ca``; here its common name must equal the claimed party name.
The server stores only SHA-256 hashes of tokens and compares them with
:func:`hmac.compare_digest`. Admin calls (submit, status) carry the admin token.

Threat model: the network is hostile (TLS), a party may try to act as another party (names
are bound to tokens or certificate CNs), and a former member may come back (``revoked``). A
refusal names the reason for the caller's operator but never reveals another party's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:  # the admin client imports this module: keep it free of the job config
    from fedsilo.deploy.config import RegisteredParty

log = logging.getLogger(__name__)

PARTY_HEADER = "x-fedsilo-party"
AUTH_HEADER = "authorization"
# trailing metadata of a refusal that passes: seconds after which the same call may succeed
RETRY_AFTER_HEADER = "x-fedsilo-retry-after-s"


@dataclass(frozen=True)
class Refusal(Exception):
    code: grpc.StatusCode
    reason: str
    retry_after_s: float | None = None  # a limit that passes (a busy slot, an empty bucket)


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        out[key.lower()] = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return out


def _bearer(meta: dict[str, str]) -> str | None:
    value = meta.get(AUTH_HEADER)
    if value is None or not value.startswith("Bearer "):
        return None
    return value.removeprefix("Bearer ")


def _hash_matches(token: str | None, expected_sha256: str) -> bool:
    if token is None:
        return False
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return hmac.compare_digest(digest, expected_sha256)


def _peer_common_name(context: grpc.ServicerContext) -> str | None:
    found = context.auth_context().get("x509_common_name")
    if not found or not isinstance(found, list):
        return None
    return found[0].decode("utf-8", "replace")


class Authenticator:
    """Decides, per call, whether the caller is a registered, unrevoked party or the admin."""

    def __init__(
        self, parties: Sequence[RegisteredParty], admin_token_sha256: str, *, mtls: bool
    ) -> None:
        self._parties = {p.name: p for p in parties}
        self._admin = admin_token_sha256
        self._mtls = mtls

    def party(self, context: grpc.ServicerContext) -> str:
        """The authenticated party name; raises :class:`Refusal` otherwise."""
        meta = _metadata(context)
        name = meta.get(PARTY_HEADER)
        if not name:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"missing '{PARTY_HEADER}' metadata: the party must say who it is",
            )
        entry = self._parties.get(name)
        if entry is None:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"party {name!r} is not registered on this server; ask the coordinator's "
                "operator to add it to [[parties]] in server.toml",
            )
        if entry.revoked:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"party {name!r} has been revoked on this server",
            )
        if self._mtls:
            cn = _peer_common_name(context)
            if cn is None:
                raise Refusal(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"party {name!r} presented no client certificate; this server requires mTLS",
                )
            if cn != name:
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client certificate is for {cn!r}, but the call claims party {name!r}",
                )
        if entry.token_sha256 is not None and not _hash_matches(_bearer(meta), entry.token_sha256):
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"party {name!r}: missing or wrong token; check token/token_file in party.toml",
            )
        return name

    def admin(self, context: grpc.ServicerContext) -> None:
        if not _hash_matches(_bearer(_metadata(context)), self._admin):
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "admin call without the right admin token (--token / FEDSILO_ADMIN_TOKEN)",
            )
