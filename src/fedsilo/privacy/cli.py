"""``fedsilo privacy ...`` and ``fedsilo audit ...``: plan a DP budget, check an audit log.

    fedsilo privacy plan --noise 1.1 --rounds 100 --sample-rate 0.1 --delta 1e-5
                         [--steps-per-round K] [--method rdp|pld]
    fedsilo privacy plan --target-epsilon 3 --rounds 100 --sample-rate 0.1 --delta 1e-5
    fedsilo audit verify LOG     exit 0 if the hash chain holds, 2 naming the first bad line
    fedsilo audit show LOG       rows and bytes per message kind, final epsilon

``plan`` answers before anything runs: the epsilon a Poisson-sampled Gaussian mechanism
spends over ``rounds * steps_per_round`` steps (record-level DP-SGD: sample rate = batch size
/ rows, steps per round = epochs * rows / batch size; client-level DP-FedAvg: sample rate =
fraction of parties per round, one step per round), or the noise multiplier for a target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fedsilo.errors import FedsiloError

privacy_app = typer.Typer(help="Plan differential-privacy budgets.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and summarize a party's audit log.", no_args_is_help=True)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def privacy_line(metrics: dict[str, Any]) -> str:
    """One line for the CLI's final output: the job's epsilon, or "" without DP."""
    final = metrics.get("final", {}).get("privacy") or {}
    if "epsilon" not in final:
        return ""
    parties = ", ".join(
        f"{p} {s.get('epsilon', 0):.3g}" for p, s in sorted(final.get("parties", {}).items())
    )
    return (
        f"privacy: {final.get('level', 'record')}-level epsilon {final['epsilon']:.4g} at delta "
        f"{final.get('delta')} (max over parties; {parties})"
    )


def _fail(exc: FedsiloError) -> typer.Exit:
    err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
    return typer.Exit(2)


@privacy_app.command("plan")
def plan(
    rounds: Annotated[int, typer.Option(help="rounds the party (or federation) joins", min=1)],
    sample_rate: Annotated[
        float, typer.Option(help="records: batch size / rows; parties: fraction per round")
    ],
    delta: Annotated[float, typer.Option(help="target delta, e.g. 1e-5 (below 1/rows)")],
    noise: Annotated[
        float | None, typer.Option("--noise", help="noise multiplier (std / clip norm)")
    ] = None,
    target_epsilon: Annotated[
        float | None, typer.Option(help="find the noise multiplier that reaches this epsilon")
    ] = None,
    steps_per_round: Annotated[
        int, typer.Option(help="DP-SGD steps per round (epochs * rows / batch size)", min=1)
    ] = 1,
    method: Annotated[str, typer.Option(help="accountant: rdp or pld")] = "rdp",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Epsilon for a noise multiplier, or the noise multiplier for a target epsilon."""
    from fedsilo.errors import ConfigError
    from fedsilo.privacy.accounting import (
        AccountingMethod,
        GaussianSpend,
        epsilon,
        noise_for_epsilon,
    )

    try:
        if (noise is None) == (target_epsilon is None):
            raise ConfigError("give exactly one of --noise or --target-epsilon")
        try:
            accountant = AccountingMethod(method)
        except ValueError:
            raise ConfigError(f"--method must be rdp or pld, got {method!r}") from None
        steps = rounds * steps_per_round
        if noise is None:
            assert target_epsilon is not None
            noise = noise_for_epsilon(
                target_epsilon, delta, sample_rate, steps, accountant, tolerance=1e-4
            )
        eps = epsilon(GaussianSpend(noise, sample_rate, steps), delta, accountant)
    except FedsiloError as exc:
        raise _fail(exc) from None
    answer = {
        "epsilon": eps,
        "delta": delta,
        "noise_multiplier": noise,
        "sample_rate": sample_rate,
        "rounds": rounds,
        "steps_per_round": steps_per_round,
        "steps": steps,
        "method": accountant.value,
        "target_epsilon": target_epsilon,
    }
    if as_json:
        typer.echo(json.dumps(answer))
        return
    if target_epsilon is not None:
        console.print(f"noise multiplier = {noise:.4f} for epsilon <= {target_epsilon:g}")
    console.print(
        f"epsilon = {eps:.4f} at delta = {delta:g} ({accountant.value}; noise {noise:.4g}, "
        f"sample rate {sample_rate:g}, {rounds} rounds x {steps_per_round} steps = {steps} steps)"
    )


@audit_app.command("verify")
def verify(log: Annotated[Path, typer.Argument(help="a party's audit log (JSON lines)")]) -> None:
    """Check the hash chain: exit 0 if intact, 2 with the first broken line and why."""
    from fedsilo.privacy.audit import verify as verify_chain

    try:
        result = verify_chain(log)
    except FedsiloError as exc:
        raise _fail(exc) from None
    if not result.ok:
        err_console.print(
            f"[bold red]broken:[/] {log} line {result.broken_line}: {result.reason} "
            f"({result.entries} entries before it verify)",
            highlight=False,
        )
        raise typer.Exit(2)
    console.print(
        f"ok: {log}: {result.entries} entries, chain intact; last hash {result.last_hash}"
    )


@audit_app.command("show")
def show(log: Annotated[Path, typer.Argument(help="a party's audit log (JSON lines)")]) -> None:
    """Summarize a verified log: rows and bytes per message kind, final epsilon."""
    from fedsilo.privacy.audit import summarize

    try:
        summary = summarize(log)
    except FedsiloError as exc:
        raise _fail(exc) from None
    table = Table(title=f"audit log of party {summary['party']!r} ({summary['entries']} entries)")
    table.add_column("kind", style="bold")
    table.add_column("rows", justify="right")
    table.add_column("bytes", justify="right")
    for kind, k in sorted(summary["kinds"].items()):
        table.add_row(kind, f"{k['rows']:,}", f"{k['bytes']:,}")
    table.add_row("total", f"{summary['entries']:,}", f"{summary['bytes']:,}", style="cyan")
    console.print(table)
    console.print(f"jobs: {', '.join(summary['jobs']) or '-'}")
    if summary["epsilon"] is not None:
        console.print(f"epsilon spent: {summary['epsilon']:.4f} at delta {summary['delta']}")
    else:
        console.print("epsilon spent: none recorded (no DP releases)")
    if summary["refused_rounds"]:
        console.print(f"rounds refused for the budget: {summary['refused_rounds']}")
    console.print(f"last hash: {summary['last_hash']}")
