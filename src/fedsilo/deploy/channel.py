"""A gRPC channel to the coordinator, for party processes and admin commands.

Light on purpose: ``fedsilo status`` and ``fedsilo submit`` import this (grpc only), never the
party's training code (torch, pandas).
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from fedsilo.errors import ConfigError

log = logging.getLogger(__name__)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def open_channel(
    address: str,
    *,
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    server_name: str | None = None,
    insecure: bool = False,
    max_message_bytes: int = 256 * 1024 * 1024,
    max_backoff_s: float = 5.0,
    ca_setting: str = "set `ca` in party.toml",
) -> grpc.Channel:
    """A channel to the coordinator: TLS with ``ca`` (and a client cert for mTLS).

    ``ca_setting`` is where the caller's user gives the CA (a party's party.toml, an admin
    command's ``--ca``), for the error when none is given."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC's own reconnect backoff grows to minutes; ours (in PartyProcess) is the policy.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", int(max_backoff_s * 1000)),
    ]
    if insecure:
        log.warning("connecting WITHOUT TLS (--insecure): use only on a trusted network")
        return grpc.insecure_channel(address, options=options)
    if ca is None:
        raise ConfigError(
            f"no CA certificate to check the coordinator with: {ca_setting} "
            "(or pass --insecure for a plaintext test)"
        )
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "ca"),
        private_key=None if key is None else _read(key, "key"),
        certificate_chain=None if cert is None else _read(cert, "cert"),
    )
    if server_name is not None:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, creds, options=options)
