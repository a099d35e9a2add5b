"""Deployment commands: ``fedsilo server``, ``party``, ``submit``, ``status``."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fedsilo.cli.common import AdminConnection, admin_options, console, plain, print_warning
from fedsilo.errors import ConfigError

if TYPE_CHECKING:  # the proto module is imported where a command needs it
    from fedsilo.deploy.proto.fedsilo_pb2 import StatusReply
    from fedsilo.deploy.status_watch import Outage


def _deploy_process(verbose: bool) -> None:
    """Logging, and files private by default: everything this process creates is 0600 in
    0700 directories (the store, checkpoints, metrics, reports, ledgers, audit logs)."""
    os.umask(PRIVATE_UMASK)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


PRIVATE_UMASK = 0o077

_INSECURE = typer.Option("--insecure", help="plaintext gRPC (testing on a trusted network)")
_VERBOSE = typer.Option("--verbose", "-v")


def server(
    config: Annotated[Path, typer.Option("--config", "-c", help="server.toml")],
    insecure: Annotated[bool, _INSECURE] = False,
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Run the coordinator: parties dial in, jobs run over them."""
    _deploy_process(verbose)
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
    _deploy_process(verbose)
    from fedsilo.deploy.config import load_party_config
    from fedsilo.deploy.party_process import PartyProcess, load_agent, use_threads

    if insecure:
        print_warning("connecting WITHOUT TLS (--insecure)")
    cfg = load_party_config(config)
    agent = load_agent(cfg)  # its files and extras first: a mistake there is the one line
    use_threads(cfg)
    proc = PartyProcess(cfg, agent, insecure=insecure)
    with contextlib.suppress(KeyboardInterrupt):
        proc.run()


@admin_options()
def submit(
    job_file: Annotated[Path | None, typer.Argument(help="TOML job file")] = None,
    *,
    restart: Annotated[
        str | None,
        typer.Option("--restart", help="run a failed job again (by its id) instead"),
    ] = None,
    admin: AdminConnection,
) -> None:
    """Submit a job (horizontal, or kind = "vertical") to a running server; prints the job id.

    With --restart JOB_ID a failed job runs again: a horizontal job resumes after its last
    completed round, a vertical job starts over as a new job."""
    if (job_file is None) == (restart is None):
        raise ConfigError("give a job file or --restart JOB_ID (one of them)")
    text = ""
    if job_file is not None:
        try:
            text = job_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"job file {job_file} cannot be read: {exc.strerror}") from None
    client = admin.client()
    job_id = client.submit(text, restart=restart or "")
    client.close()
    console.print(job_id, markup=False, highlight=False)


@admin_options()
def status(
    *,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh until Ctrl-C (or --until-done)")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between refreshes")] = 2.0,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="with --watch: stop once no job is running")
    ] = False,
    admin: AdminConnection,
) -> None:
    """Show a server's jobs (round, last round's metrics, privacy spent, failures) and parties.

    On a terminal these are tables (with --watch refreshed in place). When the output is not a
    terminal (a file, a pipe, CI) they are plain lines under a timestamp, one per job and
    party, and --watch adds a snapshot whenever a job or party changes, so
    `--watch --until-done > LOG` leaves a log. A watch rides out a server that stops
    answering (restarting): it says since when, and goes on once the server is back."""
    from fedsilo.deploy.status_watch import StatusWatch

    client = admin.client()
    try:
        reply = client.status()  # not retried: a wrong address, token or TLS file fails here
        tables = console.is_terminal and not console.is_dumb_terminal
        watcher = StatusWatch(client.status, interval_s=interval, until_done=until_done)
        if tables and watch:
            with Live(_tables(reply), console=console, refresh_per_second=4) as live:
                watcher.follow(reply, _LiveTables(live, reply))
        elif tables:
            console.print(_tables(reply))
        else:
            log = _PlainLog(admin.server or "")
            log.show(reply)
            if watch:
                watcher.follow(reply, log)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def _tables(reply: StatusReply) -> Group:
    from fedsilo.deploy.status_view import JOB_HEAD, PARTY_HEAD, job_rows, party_rows

    jobs = Table(title="Jobs")
    for col in JOB_HEAD:
        jobs.add_column(col, overflow="fold")
    for row in job_rows(reply):
        jobs.add_row(*(plain(c) for c in row))
    parties = Table(title="Parties")
    for col in PARTY_HEAD:
        parties.add_column(col)
    for row in party_rows(reply):
        parties.add_row(*(plain(c) for c in row))
    return Group(jobs, parties)


class _LiveTables:
    """``--watch`` on a terminal: the tables refreshed in place; while the server does not
    answer, the last tables under a line saying since when."""

    def __init__(self, live: Live, reply: StatusReply) -> None:
        self._live = live
        self._last = reply

    def show(self, reply: StatusReply) -> None:
        self._last = reply
        self._live.update(_tables(reply))

    def unreachable(self, outage: Outage) -> None:
        # wrapped: the console soft-wraps what it prints, which a live view crops at its width
        line = Text(outage.sentence(), style="bold yellow", no_wrap=False, overflow="fold")
        self._live.update(Group(line, _tables(self._last)))


class _PlainLog:
    """Off a terminal: plain lines under ``--- SERVER at TIME``, written when something
    changed since the last (:class:`~fedsilo.deploy.status_view.ChangeLog`)."""

    def __init__(self, server: str) -> None:
        from fedsilo.deploy.status_view import ChangeLog

        self._server = server
        self._log = ChangeLog()

    def show(self, reply: StatusReply) -> None:
        self._write(self._log.lines(reply, heading=self._heading(time.time())))

    def unreachable(self, outage: Outage) -> None:
        heading = self._heading(outage.since_s)
        self._write(self._log.unreachable(outage.sentence(), heading=heading))

    def _heading(self, at_s: float) -> str:
        from fedsilo.deploy.status_view import stamp

        return f"--- {self._server} at {stamp(at_s)}"

    @staticmethod
    def _write(lines: list[str]) -> None:
        for text in lines:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
