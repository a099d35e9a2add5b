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

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fedsilo.cli.common import console, enum_option, make_app, plain, print_error


class Accountant(enum.StrEnum):
    """``--method``: mirrors :class:`fedsilo.privacy.accounting.AccountingMethod` (imported
    lazily: dp-accounting takes a second to import)."""

    rdp = "rdp"
    pld = "pld"


privacy_app = make_app("Plan differential-privacy budgets.")
audit_app = make_app("Verify and summarize a party's audit log.")


def privacy_line(metrics: dict[str, Any]) -> str:
    """One line for the CLI's final output: the job's epsilon, or "" without DP."""
    final = metrics.get("final", {}).get("privacy") or {}
    if "epsilon" not in final:
        return ""
    parties = ", ".join(
        f"{p} {s.get('epsilon', 0):.3g}" for p, s in sorted(final.get("parties", {}).items())
    )
    line = (
        f"privacy: {final.get('level', 'record')}-level epsilon {final['epsilon']:.4g} at delta "
        f"{final.get('delta')} (max over parties; {parties})"
    )
    if metrics.get("dp_noise") == "reproducible":
        line += (
            "\nprivacy: REPRODUCIBLE NOISE (simulation only): the DP noise was seeded from the "
            "job seed, so anyone who knows the seed can remove it"
        )
    return line


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
    method: Annotated[Accountant, enum_option(Accountant, "--method", "accountant")] = (
        Accountant.rdp
    ),
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

    if (noise is None) == (target_epsilon is None):
        raise ConfigError("give exactly one of --noise or --target-epsilon")
    accountant = AccountingMethod(method.value)
    steps = rounds * steps_per_round
    if noise is None:
        assert target_epsilon is not None
        noise = noise_for_epsilon(
            target_epsilon, delta, sample_rate, steps, accountant, tolerance=1e-4
        )
    eps = epsilon(GaussianSpend(noise, sample_rate, steps), delta, accountant)
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

    result = verify_chain(log)
    if not result.ok:
        print_error(
            f"{log} line {result.broken_line}: {result.reason} "
            f"({result.entries} entries before it verify)",
            prefix="broken:",
        )
        raise typer.Exit(2)
    console.print(
        f"ok: {log}: {result.entries} entries, chain intact; last hash {result.last_hash}",
        markup=False,
        highlight=False,
    )


@audit_app.command("show")
def show(log: Annotated[Path, typer.Argument(help="a party's audit log (JSON lines)")]) -> None:
    """Summarize a verified log: rows and bytes per message kind, final epsilon."""
    from fedsilo.privacy.audit import summarize

    summary = summarize(log)
    table = Table(title=f"audit log of party {summary['party']!r} ({summary['entries']} entries)")
    table.add_column("kind", style="bold")
    table.add_column("rows", justify="right")
    table.add_column("bytes", justify="right")
    for kind, k in sorted(summary["kinds"].items()):
        table.add_row(plain(kind), f"{k['rows']:,}", f"{k['bytes']:,}")
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
