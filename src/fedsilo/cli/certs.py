"""`fedsilo certs`: make the consortium CA and issue server and party certificates.

    fedsilo certs init DIR [--name NAME] [--days N] [--force]
    fedsilo certs issue DIR NAME --kind party|server|client [--host H ...] [--out DIR] [--days N]

Errors (an existing file, a missing CA) print one readable message and exit with status 2.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from fedsilo.cli.common import console, make_app
from fedsilo.errors import ConfigError

certs_app = make_app(
    "Certificates for TLS: a consortium CA, the server's and each party's certificate."
)


class CertKind(StrEnum):
    party = "party"
    server = "server"
    client = "client"  # an admin's or a tool's: no secure-aggregation identity


_ISSUED: dict[CertKind, Literal["party", "server", "client"]] = {
    CertKind.party: "party",
    CertKind.server: "server",
    CertKind.client: "client",
}


@certs_app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="where ca.pem and ca.key are written")],
    name: Annotated[str, typer.Option(help="the CA's common name")] = "fedsilo consortium",
    days: Annotated[int, typer.Option(help="validity in days")] = 3650,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Create the consortium's certificate authority."""
    from fedsilo.deploy.certs import init_ca  # cryptography: only when a command runs

    pair = init_ca(directory, name=name, days=days, force=force)
    console.print(f"CA certificate: {pair.cert}  (give this file to every party and the server)")
    console.print(f"CA key:         {pair.key}  (keep it secret; it signs every certificate)")


@certs_app.command("issue")
def issue_command(
    directory: Annotated[Path, typer.Argument(help="the CA directory (ca.pem, ca.key)")],
    name: Annotated[str, typer.Argument(help="party name (for a party) or server name")],
    kind: Annotated[
        CertKind,
        typer.Option(
            "--kind",
            help="party, server, or client (an admin's: no secure-aggregation identity)",
        ),
    ],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="DNS name or IP parties dial (server; repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output directory [default: the CA directory]")
    ] = None,
    days: Annotated[int, typer.Option(help="validity in days")] = 365,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Issue a server, party or client (admin) certificate signed by the CA."""
    from fedsilo.deploy.certs import ROSTER, issue

    if host and kind is not CertKind.server:
        raise ConfigError("--host applies to server certificates only")
    hosts = tuple(host) if host else ("localhost", "127.0.0.1")
    pair = issue(
        directory,
        out if out is not None else directory,
        name,
        kind=_ISSUED[kind],
        hosts=hosts,
        days=days,
        force=force,
    )
    console.print(f"{kind.value} certificate: {pair.cert}")
    console.print(f"{kind.value} key:         {pair.key}")
    if kind is CertKind.party:
        folder = pair.cert.parent
        console.print(
            f"identity key:      {folder / (name + '.identity.key')}  (secure aggregation)"
        )
        roster = directory / ROSTER
        console.print(f"roster:            {roster}  (give it to every party with ca.pem)")
