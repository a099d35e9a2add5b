"""``fedsilo query``: an aggregate query across the parties (federated analytics)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fedsilo.cli.common import (
    AdminConnection,
    admin_options,
    console,
    enum_option,
    err_console,
    plain,
    shown_path,
)

if TYPE_CHECKING:
    from fedsilo.analytics.run import QueryResult


class OutputFormat(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def answer_table(result: QueryResult) -> Table:
    """The answer as a Rich table: groups, then each aggregate with its 95% interval."""
    from fedsilo.analytics.output import cell_text

    title = f"{result.mechanism.value} DP" if result.epsilon else "no DP"
    if result.epsilon:
        title += f", epsilon {result.epsilon:.4g}, delta {result.delta:g}"
    table = Table(title=f"query answer ({title})", caption="\n".join(result.notices))
    for g in result.group_by:
        table.add_column(g, style="bold")
    for label in result.labels:
        table.add_column(label, justify="right")
    for key, cells, sup in zip(result.groups, result.cells, result.suppressed, strict=True):
        groups = [plain(k) for k in key]
        if sup:
            table.add_row(*groups, *(["suppressed"] * len(cells)), style="dim")
        else:
            table.add_row(*groups, *(plain(cell_text(c)) for c in cells))
    return table


@admin_options(server_help="run over a deployment's party processes", server_required=False)
def query(
    job_file: Annotated[
        Path, typer.Argument(help="analytics job TOML (table schema, parties, privacy)")
    ],
    sql: Annotated[str, typer.Argument(help="the query, in the supported SQL subset")],
    *,
    admin: AdminConnection,
    ledgers: Annotated[
        Path,
        typer.Option(
            "--ledgers",
            help="simulation: where the simulated parties keep their privacy ledgers, one per "
            "party name, across jobs",
        ),
    ] = Path("runs/ledgers"),
    fmt: Annotated[OutputFormat, enum_option(OutputFormat, "--format", "output format")] = (
        OutputFormat.table
    ),
    html_path: Annotated[
        Path | None, typer.Option("--html", help="write an HTML page with charts")
    ] = None,
) -> None:
    """Answer an aggregate query across the parties without pooling rows (federated analytics)."""
    from fedsilo.extras import require

    require("analytics", "fedsilo query")
    if admin.server is None:  # the job and its files' headers first, before DuckDB and sqlglot
        from fedsilo.analytics.config import load_analytics_job
        from fedsilo.preflight import check_headers

        job = load_analytics_job(job_file)
        check_headers(job)
    from fedsilo.analytics import output
    from fedsilo.analytics.run import query as run_query

    if admin.server is not None:
        from fedsilo.deploy.remote_query import query_server

        result = query_server(admin.client(), job_file, sql)
    else:
        result = run_query(job, sql, ledger_dir=ledgers)
    if fmt is OutputFormat.table:
        console.print(answer_table(result))
        for party, (spent, budget) in result.spent.items():
            limit = "no limit" if budget is None else f"{budget:g}"
            console.print(f"{party}: epsilon spent {spent:.4g} of {limit} (its own ledger)")
    elif fmt is OutputFormat.csv:
        typer.echo(output.to_csv(result), nl=False)
    else:
        typer.echo(output.to_json_text(result))
    if html_path is not None:
        html_path.write_text(output.to_html(result), encoding="utf-8")
        err_console.print(f"html: {shown_path(html_path)}", markup=False, highlight=False)
