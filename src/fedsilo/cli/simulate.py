"""``fedsilo simulate`` (every party simulated on this machine) and ``fedsilo datasets``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fedsilo.cli.common import console, fmt, progress_bar
from fedsilo.cli.privacy import privacy_line

METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auc")


def final_table(metrics: dict[str, Any]) -> Table:
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
    table.add_row("global", *(fmt(metrics["final"]["global"].get(m)) for m in present))
    for party, row in sorted(metrics["final"]["parties"].items()):
        table.add_row(party, *(fmt(row.get(m)) for m in present))
    if "baseline" in metrics:
        base = metrics["baseline"]
        table.add_row("baseline (pooled)", *(fmt(base.get(m)) for m in present), style="cyan")
        fed, cen = metrics["final"]["global"].get("accuracy"), base.get("accuracy")
        if fed is not None and cen:
            table.caption = f"federated / centralized accuracy = {fed / cen:.4f}"
    return table


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
    from fedsilo.cli.vertical import is_vertical_file, simulate_vertical_cli
    from fedsilo.config import load_job
    from fedsilo.simulation import simulate as run_simulation

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

        def on_round(record: Any) -> None:
            g = record.global_metrics
            dropped = f"  dropped: {', '.join(sorted(record.failures))}" if record.failures else ""
            progress.console.print(
                f"round {record.round:>3}  loss {fmt(g.get('loss'))}  "
                f"accuracy {fmt(g.get('accuracy'))}  ({record.duration_s:.2f} s){dropped}"
            )
            progress.advance(task)

        out_dir = out if out is not None else Path("runs") / job.name
        result = run_simulation(
            job, baseline=baseline, on_round=on_round, audit_dir=out_dir / "audit"
        )
    if baseline:
        console.print("trained the centralized baseline on the pooled training rows")
    paths = result.save(out_dir)
    console.print(final_table(result.metrics_json()))
    console.print(privacy_line(result.metrics_json()))  # "" without DP
    console.print(f"model:   {paths['model']}")
    console.print(f"metrics: {paths['metrics_json']}  {paths['metrics_csv']}")
    console.print(f"report:  [bold]{paths['report']}[/]")
    console.print(f"audit:   {out_dir / 'audit'} (one hash-chained log per party)")


def datasets() -> None:
    """List the built-in datasets (shipped inside installed packages; nothing is downloaded)."""
    from fedsilo.data.builtin import BUILTIN_DATASETS

    table = Table(title="Built-in datasets")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in BUILTIN_DATASETS.items():
        table.add_row(name, description)
    console.print(table)
