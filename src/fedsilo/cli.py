"""The `fedsilo` command line (Typer + Rich).

    fedsilo simulate JOB.toml --out DIR [--rounds N] [--seed S] [--baseline]
    fedsilo datasets

Errors that fedsilo raises on purpose (bad config, bad data) print one readable message and
exit with status 2; no traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsilo.errors import FedsiloError
from fedsilo.privacy.cli import audit_app, privacy_app, privacy_line

if TYPE_CHECKING:
    from fedsilo.deploy.client import AdminClient

app = typer.Typer(
    name="fedsilo",
    help="Federated learning across organizations that never pool their rows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
app.add_typer(privacy_app, name="privacy")
app.add_typer(audit_app, name="audit")

METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auc")


def progress_bar(target: Console) -> Progress:
    """The bar every long CLI run shows: description, bar, done/total, elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=target,
    )


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _final_table(metrics: dict) -> Table:
    present = [
        m
        for m in METRICS
        if any(
            m in row
            for row in [
                metrics["final"]["global"],
                *metrics["final"]["parties"].values(),
                metrics.get("baseline", {}),
            ]
        )
    ]
    table = Table(
        title=f"Final metrics (global: {metrics['data']['global_evaluation']}; "
        "parties: own held-out rows)",
        show_lines=False,
    )
    table.add_column("scope", style="bold")
    for m in present:
        table.add_column(m, justify="right")
    table.add_row("global", *(_fmt(metrics["final"]["global"].get(m)) for m in present))
    for party, row in sorted(metrics["final"]["parties"].items()):
        table.add_row(party, *(_fmt(row.get(m)) for m in present))
    if "baseline" in metrics:
        base = metrics["baseline"]
        table.add_row("baseline (pooled)", *(_fmt(base.get(m)) for m in present), style="cyan")
        fed, cen = metrics["final"]["global"].get("accuracy"), base.get("accuracy")
        if fed is not None and cen:
            table.caption = f"federated / centralized accuracy = {fed / cen:.4f}"
    return table


@app.command()
def simulate(
    job_file: Annotated[Path, typer.Argument(help="TOML job file")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output directory [default: runs/<job name>]")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="override the job's rounds")] = None,
    seed: Annotated[int | None, typer.Option(help="override the job's seed")] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline", help="also train the same model on the pooled data, for comparison"
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a job with every party simulated on this machine."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from fedsilo.config import load_job
        from fedsilo.simulation import simulate as run_simulation
        from fedsilo.vertical.cli import is_vertical_file, simulate_vertical_cli

        if is_vertical_file(job_file):  # kind = "vertical": PSI + hetero LR / SecureBoost
            simulate_vertical_cli(job_file, out=out, seed=seed, baseline=baseline, console=console)
            return
        job = load_job(job_file)
        if rounds is not None or seed is not None:
            job = job.with_overrides(rounds=rounds, seed=seed)
        console.print(
            f"[bold]fedsilo[/] simulating [bold]{job.name}[/]: {job.rounds} rounds, seed {job.seed}"
        )
        with progress_bar(console) as progress:
            task = progress.add_task("rounds", total=job.rounds)

            def on_round(record) -> None:  # type: ignore[no-untyped-def]
                g = record.global_metrics
                dropped = (
                    f"  dropped: {', '.join(sorted(record.failures))}" if record.failures else ""
                )
                progress.console.print(
                    f"round {record.round:>3}  loss {_fmt(g.get('loss'))}  "
                    f"accuracy {_fmt(g.get('accuracy'))}  ({record.duration_s:.2f} s){dropped}"
                )
                progress.advance(task)

            out_dir = out if out is not None else Path("runs") / job.name
            result = run_simulation(
                job, baseline=baseline, on_round=on_round, audit_dir=out_dir / "audit"
            )
        if baseline:
            console.print("trained the centralized baseline on the pooled training rows")
        paths = result.save(out_dir)
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(_final_table(result.metrics_json()))
    console.print(privacy_line(result.metrics_json()))  # "" without DP
    console.print(f"model:   {paths['model']}")
    console.print(f"metrics: {paths['metrics_json']}  {paths['metrics_csv']}")
    console.print(f"report:  [bold]{paths['report']}[/]")
    console.print(f"audit:   {out_dir / 'audit'} (one hash-chained log per party)")


@app.command()
def datasets() -> None:
    """List the built-in datasets (shipped inside installed packages; nothing is downloaded)."""
    from fedsilo.data.builtin import BUILTIN_DATASETS

    table = Table(title="Built-in datasets")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in BUILTIN_DATASETS.items():
        table.add_row(name, description)
    console.print(table)


_SERVER_OPT = typer.Option("--server", "-s", help="coordinator address host:port")
_TOKEN_OPT = typer.Option("--token", envvar="FEDSILO_ADMIN_TOKEN", help="admin token")
_CA_OPT = typer.Option("--ca", help="CA certificate that signed the server's certificate")
_NAME_OPT = typer.Option("--server-name", help="TLS name to check, if not the host dialled")
_INSECURE_OPT = typer.Option("--insecure", help="plaintext gRPC")
_CERT_OPT = typer.Option("--cert", help="client certificate, when the server requires mTLS")
_KEY_OPT = typer.Option("--key", help="client certificate's private key")


@app.command()
def query(
    job_file: Annotated[
        Path, typer.Argument(help="analytics job TOML (table schema, parties, privacy)")
    ],
    sql: Annotated[str, typer.Argument(help="the query, in the supported SQL subset")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="run directory for ledgers [default: runs/<job name>]"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    html_path: Annotated[
        Path | None, typer.Option("--html", help="write an HTML page with charts")
    ] = None,
    server_address: Annotated[
        str | None,
        typer.Option("--server", "-s", help="run over a deployment's party processes"),
    ] = None,
    token: Annotated[str | None, _TOKEN_OPT] = None,
    ca: Annotated[Path | None, _CA_OPT] = None,
    server_name: Annotated[str | None, _NAME_OPT] = None,
    insecure: Annotated[bool, _INSECURE_OPT] = False,
    cert: Annotated[Path | None, _CERT_OPT] = None,
    key: Annotated[Path | None, _KEY_OPT] = None,
) -> None:
    """Answer an aggregate query across the parties without pooling rows (federated analytics)."""
    try:
        from fedsilo.analytics import output
        from fedsilo.analytics.config import load_analytics_job
        from fedsilo.analytics.run import run_query, simulation_transport

        if fmt not in ("table", "csv", "json"):
            raise typer.BadParameter("--format must be table, csv or json")
        if server_address is not None:
            from fedsilo.deploy.remote_query import query_server

            client = _admin_client(server_address, token, ca, server_name, insecure, cert, key)
            result = query_server(client, job_file, sql)
        else:
            job = load_analytics_job(job_file)
            run_dir = out if out is not None else Path("runs") / job.name
            result = run_query(
                job, sql, transport=simulation_transport(job), ledger_dir=run_dir / "ledger"
            )
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if fmt == "table":
        console.print(output.rich_table(result))
        for party, (spent, budget) in result.spent.items():
            console.print(f"{party}: epsilon spent {spent:.4g} of {budget:g}")
    elif fmt == "csv":
        print(output.to_csv(result), end="")
    else:
        print(output.to_json_text(result))
    if html_path is not None:
        html_path.write_text(output.to_html(result), encoding="utf-8")
        err_console.print(f"html: {html_path}")


# -- deployment: server, party, submit, status (fedsilo.deploy) --------------------------------
def _deploy_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def server(
    config: Annotated[Path, typer.Option("--config", "-c", help="server.toml")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="plaintext gRPC (testing on a trusted network)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the coordinator: parties dial in, jobs run over them."""
    _deploy_logging(verbose)
    try:
        from fedsilo.deploy.config import load_server_config
        from fedsilo.deploy.server import INSECURE_WARNING, Server

        if insecure:
            err_console.print(f"[bold yellow]WARNING:[/] {INSECURE_WARNING}", highlight=False)
        srv = Server(load_server_config(config), insecure=insecure)
        srv.start()
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        srv.wait()
    except KeyboardInterrupt:
        srv.stop()


@app.command()
def party(
    config: Annotated[Path, typer.Option("--config", "-c", help="party.toml")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="plaintext gRPC (testing on a trusted network)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an organization's party: load local data, dial the coordinator, answer tasks."""
    _deploy_logging(verbose)
    try:
        from fedsilo.deploy.config import load_party_config
        from fedsilo.deploy.party_process import PartyProcess, load_agent

        if insecure:
            err_console.print("[bold yellow]WARNING:[/] connecting WITHOUT TLS (--insecure)")
        cfg = load_party_config(config)
        proc = PartyProcess(cfg, load_agent(cfg), insecure=insecure)
        proc.run()
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _admin_client(
    address: str,
    token: str | None,
    ca: Path | None,
    server_name: str | None,
    insecure: bool,
    cert: Path | None,
    key: Path | None,
) -> AdminClient:
    from fedsilo.deploy.client import AdminClient
    from fedsilo.errors import ConfigError

    if not token:
        raise ConfigError("no admin token: pass --token or set FEDSILO_ADMIN_TOKEN")
    return AdminClient(
        address, token, ca=ca, cert=cert, key=key, server_name=server_name, insecure=insecure
    )


@app.command()
def submit(
    job_file: Annotated[Path, typer.Argument(help="TOML job file")],
    server_address: Annotated[str, _SERVER_OPT],
    token: Annotated[str | None, _TOKEN_OPT] = None,
    ca: Annotated[Path | None, _CA_OPT] = None,
    server_name: Annotated[str | None, _NAME_OPT] = None,
    insecure: Annotated[bool, _INSECURE_OPT] = False,
    cert: Annotated[Path | None, _CERT_OPT] = None,
    key: Annotated[Path | None, _KEY_OPT] = None,
) -> None:
    """Submit a job (horizontal, or kind = "vertical") to a running server; prints the job id."""
    try:
        try:
            text = job_file.read_text(encoding="utf-8")
        except OSError as exc:
            from fedsilo.errors import ConfigError

            raise ConfigError(f"job file {job_file} cannot be read: {exc.strerror}") from None
        client = _admin_client(server_address, token, ca, server_name, insecure, cert, key)
        job_id = client.submit(text)
        client.close()
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(job_id)


@app.command()
def status(
    server_address: Annotated[str, _SERVER_OPT],
    token: Annotated[str | None, _TOKEN_OPT] = None,
    ca: Annotated[Path | None, _CA_OPT] = None,
    server_name: Annotated[str | None, _NAME_OPT] = None,
    insecure: Annotated[bool, _INSECURE_OPT] = False,
    cert: Annotated[Path | None, _CERT_OPT] = None,
    key: Annotated[Path | None, _KEY_OPT] = None,
) -> None:
    """Show a server's jobs, their rounds, and which parties are online."""
    try:
        client = _admin_client(server_address, token, ca, server_name, insecure, cert, key)
        reply = client.status()
        client.close()
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    jobs = Table(title="Jobs")
    for col in ("job", "name", "status", "round", "results / error"):
        jobs.add_column(col)
    for j in reply.jobs:
        jobs.add_row(
            j.job_id, j.name, j.status, f"{j.round}/{j.rounds}", j.error or j.run_dir or ""
        )
    console.print(jobs)
    parties = Table(title="Parties")
    parties.add_column("party")
    parties.add_column("online")
    parties.add_column("last seen")
    for p in reply.parties:
        seen = "never" if p.last_seen_s_ago < 0 else f"{p.last_seen_s_ago:.1f} s ago"
        parties.add_row(p.name, "yes" if p.online else "no", seen)
    console.print(parties)


from fedsilo.deploy.certs_cli import certs_app  # noqa: E402

app.add_typer(certs_app, name="certs")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
