"""``fedsilo privacy ...`` and ``fedsilo audit ...``: plan a DP budget, check an audit log.

    fedsilo privacy plan --noise 1.1 --rounds 100 --sample-rate 0.1 --delta 1e-5
                         [--steps-per-round K] [--method rdp|pld]
    fedsilo privacy plan --target-epsilon 3 --rounds 100 --sample-rate 0.1 --delta 1e-5
    fedsilo privacy audit JOB.toml [--canaries M] [--party P] [--confidence C]
    fedsilo audit verify LOG [--anchors STORE]
                                 exit 0 if the hash chain holds (and agrees with the signed
                                 anchors in STORE: a job store, a party ledger or a JSON-lines
                                 file), 2 naming the first bad line, the cut or the rewrite
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

from fedsilo.cli.common import (
    OutDir,
    console,
    enum_option,
    make_app,
    plain,
    print_error,
    shown_path,
)


class Accountant(enum.StrEnum):
    """``--method``: mirrors :class:`fedsilo.privacy.accounting.AccountingMethod` (imported
    lazily: dp-accounting takes a second to import)."""

    rdp = "rdp"
    pld = "pld"


privacy_app = make_app("Plan differential-privacy budgets and audit them empirically.")
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
        f"{final.get('delta')}"
    )
    if parties:  # record level: each party's own; client level is the federation's one figure
        line += f" (max over parties; {parties})"
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
    from fedsilo.privacy.accounting import AccountingMethod, plan_spend

    if (noise is None) == (target_epsilon is None):
        raise ConfigError("give exactly one of --noise or --target-epsilon")
    accountant = AccountingMethod(method.value)
    found = plan_spend(
        rounds,
        sample_rate,
        delta,
        noise_multiplier=noise,
        target_epsilon=target_epsilon,
        steps_per_round=steps_per_round,
        method=accountant,
    )
    noise, eps, steps = found.noise_multiplier, found.epsilon, found.steps
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
def verify(
    log: Annotated[Path, typer.Argument(help="a party's audit log (JSON lines)")],
    anchors: Annotated[
        Path | None,
        typer.Option(
            "--anchors",
            help="signed anchors of the log's head: the coordinator's job store (state.sqlite), "
            "the party's privacy ledger, or a JSON-lines file",
        ),
    ] = None,
    party: Annotated[
        str | None,
        typer.Option("--party", help="whose anchors [default: the log's party, or its file name]"),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="the party's identity key (hex): every anchor must be its"),
    ] = None,
) -> None:
    """Check the hash chain (and the log against signed anchors): exit 0 if intact, else 2."""
    from fedsilo.errors import AuditError
    from fedsilo.privacy.audit import load_anchors, log_party
    from fedsilo.privacy.audit import verify as verify_chain

    found = []
    if anchors is not None:
        who = party or log_party(log)
        found = load_anchors(anchors, who)
        if not found and log.exists():  # a missing log is reported as such, below
            raise AuditError(
                f"{anchors} holds no anchors of party '{who}'; check --party or the file"
            )
    result = verify_chain(log, found, key=key)  # no anchors: a missing log raises
    if result.missing:
        raise AuditError(result.problem(log))
    if not result.ok:
        where = f" line {result.broken_line}" if result.broken_line else ""
        print_error(
            f"{log}{where}: {result.reason} ({result.entries} entries verify)", prefix="broken:"
        )
        raise typer.Exit(2)
    console.print(
        f"ok: {log}: {result.entries} entries, chain intact; last hash {result.last_hash}",
        markup=False,
        highlight=False,
    )
    if found:
        keys = sorted({a.key[:16] for a in found})
        console.print(
            f"anchored: {len(found)} signed anchors agree, the latest covering "
            f"{result.anchored} of {result.entries} entries (key {', '.join(keys)}...)",
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


@privacy_app.command("audit")
def audit(
    job_file: Annotated[Path, typer.Argument(help="TOML job file (horizontal)")],
    out: OutDir = None,
    canaries: Annotated[
        int, typer.Option(help="rows of the audited party that become canaries", min=20)
    ] = 100,
    party: Annotated[
        str | None, typer.Option(help="the audited party (default: the first by name)")
    ] = None,
    confidence: Annotated[float, typer.Option(help="confidence of the lower bound")] = 0.95,
    low_fpr: Annotated[float, typer.Option(help="report the TPR at this FPR")] = 0.01,
    audit_seed: Annotated[
        int | None, typer.Option(help="seed of the canary choice and coins (default: the job seed)")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="override the job's rounds", min=1)] = None,
    seed: Annotated[int | None, typer.Option(help="override the job's seed")] = None,
) -> None:
    """Empirical privacy audit: canaries at one party, one training run, a membership test.

    Prints the attack's AUC, its TPR at a low FPR and an epsilon lower bound (Steinke, Nasr &
    Jagielski 2023) beside the accountant's epsilon; writes the run with the audit in
    metrics.json and report.html. Exit 1 if the bound exceeds the accountant's epsilon.
    """
    from rich.markup import escape

    from fedsilo.cli.common import print_warning, progress_bar, round_reporter
    from fedsilo.config import JobConfig
    from fedsilo.jobs import load_as
    from fedsilo.privacy_audit import AuditConfig, run_privacy_audit

    job = load_as(JobConfig, job_file)  # a vertical or analytics file is refused, named
    if rounds is not None or seed is not None:
        job = job.with_overrides(rounds=rounds, seed=seed)
    cfg = AuditConfig(
        party=party, canaries=canaries, confidence=confidence, low_fpr=low_fpr, seed=audit_seed
    )
    out_dir = out if out is not None else Path("runs") / job.name
    console.print(
        f"[bold]fedsilo[/] privacy audit of [bold]{escape(job.name)}[/]: {canaries} canaries, "
        f"{job.rounds} rounds, seed {job.seed}"
    )
    with progress_bar(console) as progress:
        on_round = round_reporter(progress, progress.add_task("rounds", total=job.rounds))
        result, found = run_privacy_audit(job, cfg, on_round=on_round, audit_dir=out_dir / "audit")
    paths = result.save(out_dir)
    t = found.test
    acct = found.accountant_epsilon
    lines = [
        f"audited party: {found.party} ({t.canaries} canaries with wrong labels, {t.included} "
        f"trained on by secret coin, seed {found.seed})",
        f"canary AUC: {t.auc:.3f}   TPR at {100 * t.low_fpr:g}% FPR: {t.tpr_at_low_fpr:.3f}",
        f"epsilon lower bound: {t.epsilon_lower_bound:.3f} ({100 * t.confidence:g}% confidence, "
        f"delta {t.delta:g}; {t.correct} of {t.guesses} guesses right)",
        "accountant's epsilon: "
        + ("none (no DP)" if acct == float("inf") else f"{acct:.3f} ({found.party})"),
        f"report: {shown_path(paths['report'])}",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if not found.consistent:
        print_warning(
            f"the empirical lower bound {t.epsilon_lower_bound:.3f} exceeds the accountant's "
            f"epsilon {acct:.3f}: the training leaks more than it accounts for (or, with "
            f"probability at most {1 - t.confidence:g}, this is chance)"
        )
        raise typer.Exit(1)
