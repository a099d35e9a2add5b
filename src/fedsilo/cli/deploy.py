"""Deployment commands: ``fedsilo server``, ``party``, ``submit``, ``status``."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedsilo.cli.common import AdminConnection, admin_options, console, plain, print_warning
from fedsilo.errors import ConfigError


def _deploy_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


_INSECURE = typer.Option("--insecure", help="plaintext gRPC (testing on a trusted network)")
_VERBOSE = typer.Option("--verbose", "-v")


def server(
    config: Annotated[Path, typer.Option("--config", "-c", help="server.toml")],
    insecure: Annotated[bool, _INSECURE] = False,
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Run the coordinator: parties dial in, jobs run over them."""
    _deploy_logging(verbose)
    from fedsilo.deploy.config import load_server_config
    from fedsilo.deploy.server import INSECURE_WARNING, Server

    if insecure:
        print_warning(INSECURE_WARNING)
    srv = Server(load_server_config(config), insecure=insecure)
    srv.start()
    try:
        srv.wait()
    except KeyboardInterrupt:
        srv.stop()


def party(
    config: Annotated[Path, typer.Option("--config", "-c", help="party.toml")],
    insecure: Annotated[bool, _INSECURE] = False,
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Run an organization's party: load local data, dial the coordinator, answer tasks."""
    _deploy_logging(verbose)
    from fedsilo.deploy.config import load_party_config
    from fedsilo.deploy.party_process import PartyProcess, load_agent

    if insecure:
        print_warning("connecting WITHOUT TLS (--insecure)")
    cfg = load_party_config(config)
    proc = PartyProcess(cfg, load_agent(cfg), insecure=insecure)
    with contextlib.suppress(KeyboardInterrupt):
        proc.run()


@admin_options()
def submit(
    job_file: Annotated[Path, typer.Argument(help="TOML job file")],
    *,
    admin: AdminConnection,
) -> None:
    """Submit a job (horizontal, or kind = "vertical") to a running server; prints the job id."""
    try:
        text = job_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"job file {job_file} cannot be read: {exc.strerror}") from None
    client = admin.client()
    job_id = client.submit(text)
    client.close()
    console.print(job_id, markup=False, highlight=False)


@admin_options()
def status(*, admin: AdminConnection) -> None:
    """Show a server's jobs, their rounds, and which parties are online."""
    client = admin.client()
    reply = client.status()
    client.close()
    jobs = Table(title="Jobs")
    for col in ("job", "name", "status", "round", "results / error"):
        jobs.add_column(col)
    for j in reply.jobs:
        cells = (j.job_id, j.name, j.status, f"{j.round}/{j.rounds}", j.error or j.run_dir or "")
        jobs.add_row(*(plain(c) for c in cells))
    console.print(jobs)
    parties = Table(title="Parties")
    parties.add_column("party")
    parties.add_column("online")
    parties.add_column("last seen")
    for p in reply.parties:
        seen = "never" if p.last_seen_s_ago < 0 else f"{p.last_seen_s_ago:.1f} s ago"
        parties.add_row(plain(p.name), "yes" if p.online else "no", seen)
    console.print(parties)
