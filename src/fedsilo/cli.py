"""The `fedsilo` command line (Typer + Rich).

    fedsilo simulate JOB.toml --out DIR [--rounds N] [--seed S] [--baseline]
    fedsilo datasets

Errors that fedsilo raises on purpose (bad config, bad data) print one readable message and
exit with status 2; no traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsilo.errors import FedsiloError

app = typer.Typer(
    name="fedsilo",
    help="Federated learning across organizations that never pool their rows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auc")


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
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
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

            result = run_simulation(job, baseline=baseline, on_round=on_round)
        if baseline:
            console.print("trained the centralized baseline on the pooled training rows")
        paths = result.save(out if out is not None else Path("runs") / job.name)
    except FedsiloError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(_final_table(result.metrics_json()))
    console.print(f"model:   {paths['model']}")
    console.print(f"metrics: {paths['metrics_json']}  {paths['metrics_csv']}")
    console.print(f"report:  [bold]{paths['report']}[/]")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
