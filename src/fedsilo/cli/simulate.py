"""``fedsilo simulate`` (every party simulated on this machine) and ``fedsilo datasets``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fedsilo.cli.common import (
    OutDir,
    console,
    fmt,
    plain,
    progress_bar,
    round_reporter,
    shown_path,
    warning_reporter,
)
from fedsilo.cli.privacy import privacy_line

if TYPE_CHECKING:
    from fedsilo.config import JobConfig
    from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob
    from fedsilo.vertical.result import VerticalResult

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
                metrics.get("baseline") or {},
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
        table.add_row(plain(party), *(fmt(row.get(m)) for m in present))
    if metrics.get("baseline"):
        base = metrics["baseline"]
        table.add_row("baseline (pooled)", *(fmt(base.get(m)) for m in present), style="cyan")
        fed, cen = metrics["final"]["global"].get("accuracy"), base.get("accuracy")
        if fed is not None and cen:
            table.caption = f"federated / centralized accuracy = {fed / cen:.4f}"
    return table


def simulate(
    job_file: Annotated[
        Path, typer.Argument(help="TOML job file (horizontal, vertical or vertical-score)")
    ],
    out: OutDir = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="override the job's rounds (vertical: hetero-LR epochs or SecureBoost trees)",
            min=1,
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="override the job's seed")] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline", help="also train the same model on the pooled data, for comparison"
        ),
    ] = False,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow",
            metavar="URI",
            help="log to MLflow (e.g. file:runs/mlruns); sets [tracking] mlflow",
        ),
    ] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            "--tensorboard",
            metavar="DIR",
            help="write TensorBoard event files under DIR; sets [tracking] tensorboard",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|local|ADDRESS",
            help="run the parties as Ray actors: on the cluster this machine belongs to (auto), "
            "a new local one (local) or at ADDRESS (HOST:6379, ray://HOST:10001); horizontal "
            "jobs; needs pip install 'fedsilo[ray]'",
        ),
    ] = None,
) -> None:
    """Run a training job (horizontal or kind = "vertical"), or score new customers with a
    vertical run (kind = "vertical-score"), with every party on this machine."""
    to_stderr = logging.StreamHandler()
    # The run shows a party's budget running out as a line of its own (on_warning), before
    # round 1: its log record would say it a second time.
    to_stderr.addFilter(lambda record: record.name != "fedsilo.runtime.budget_outlook")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[to_stderr],
    )
    from fedsilo.config import JobConfig
    from fedsilo.jobs import VERTICAL_SCORE, load_job
    from fedsilo.preflight import check_headers, require_extras

    # Configuration, extras and file headers first: an error there is reported before PyTorch
    # or the HE libraries are imported (bench/header_errors.py).
    loaded = load_job(job_file)
    if loaded.kind == VERTICAL_SCORE:
        from fedsilo.vertical.config import VerticalScoreJob

        assert isinstance(loaded, VerticalScoreJob)
        _score_vertical(loaded, out if out is not None else Path("runs") / loaded.name)
        return
    require_extras(loaded, ray=ray)
    check_headers(loaded)
    from fedsilo.simulation import as_training_job

    job = as_training_job(loaded)
    if rounds is not None or seed is not None:
        job = job.with_overrides(rounds=rounds, seed=seed)
    if mlflow is not None or tensorboard is not None:
        from fedsilo.tracking import with_tracking

        job = with_tracking(job, mlflow=mlflow, tensorboard=tensorboard)
    out_dir = out if out is not None else Path("runs") / job.name
    if isinstance(job, JobConfig):
        _simulate_horizontal(job, out_dir, baseline=baseline, ray=ray)
    else:
        _simulate_vertical(job, out_dir, baseline=baseline)


def _simulate_horizontal(
    job: JobConfig, out_dir: Path, *, baseline: bool, ray: str | None = None
) -> None:
    from fedsilo.simulation import Progress
    from fedsilo.simulation import simulate as run_simulation

    where = "" if ray is None else f", parties on Ray ({escape(ray)})"
    console.print(
        f"[bold]fedsilo[/] simulating [bold]{escape(job.name)}[/]: {job.rounds} rounds, "
        f"seed {job.seed}{where}"
    )
    with progress_bar(console) as progress:
        on_round = round_reporter(progress, progress.add_task("rounds", total=job.rounds))
        result = run_simulation(
            job,
            baseline=baseline,
            progress=Progress(on_round=on_round, on_warning=warning_reporter(progress)),
            audit_dir=out_dir / "audit",
            ray=ray,
        )
    if baseline:
        console.print("trained the centralized baseline on the pooled training rows")
    paths = result.save(out_dir)
    console.print(final_table(result.metrics_json()))
    importance = importance_table(result.importance())
    if importance is not None:
        console.print(importance)
    console.print(privacy_line(result.metrics_json()), markup=False)  # "" without DP
    shown = {name: shown_path(path) for name, path in paths.items()}
    console.print(f"model:   {shown['model']}", markup=False)
    console.print(f"metrics: {shown['metrics_json']}  {shown['metrics_csv']}", markup=False)
    console.print(f"report:  [bold]{escape(shown['report'])}[/]")
    console.print(
        f"audit:   {shown_path(out_dir / 'audit')} (one hash-chained log per party; its ledger "
        "with the log's signed anchors beside it)",
        markup=False,
    )
    tracking_lines(result.tracking)


def tracking_lines(tracking: dict[str, Any] | None) -> None:
    """Where a tracked run was logged (nothing for an untracked run)."""
    if not tracking:
        return
    if "mlflow" in tracking:
        m = tracking["mlflow"]
        console.print(
            f"mlflow:  {m['uri']} experiment {m['experiment_id']} run {m['run_id']}", markup=False
        )
    if "tensorboard" in tracking:
        console.print(
            f"tensorboard: {shown_path(tracking['tensorboard']['log_dir'])}", markup=False
        )


def _simulate_vertical(job: VerticalJobConfig, out_dir: Path, *, baseline: bool) -> None:
    from fedsilo.simulation import Progress
    from fedsilo.simulation import simulate as run_simulation
    from fedsilo.vertical.config import VerticalAlgorithm

    console.print(
        f"[bold]fedsilo[/] vertical [bold]{escape(job.name)}[/]: {job.algorithm.value} over "
        f"{job.he.scheme.value}, guest {escape(job.guest.name)}, hosts "
        f"{escape(', '.join(h.name for h in job.hosts))}, seed {job.seed}"
    )
    with progress_bar(console) as progress:
        psi = progress.add_task("PSI alignment", total=5)
        boost = job.algorithm is VerticalAlgorithm.SECUREBOOST
        unit = "trees" if boost else "epochs"  # early stopping may end either sooner
        training = progress.add_task(unit, total=job.rounds, start=False)

        def on_psi_step(step: str, done: int, total: int) -> None:
            progress.update(psi, completed=done, total=total, description=f"PSI: {step} done")
            if done == total:
                progress.start_task(training)

        def on_epoch(epoch: int, loss: float, seconds: float) -> None:
            progress.console.print(f"epoch {epoch:>3}  Taylor loss {loss:.6f}  ({seconds:.2f} s)")
            progress.advance(training)

        def on_tree(tree: int, seconds: float) -> None:
            progress.console.print(f"tree {tree:>3}  grown ({seconds:.2f} s)")
            progress.advance(training)

        result = run_simulation(
            job,
            baseline=baseline,
            progress=Progress(on_psi_step=on_psi_step, on_epoch=on_epoch, on_tree=on_tree),
        )
    console.print(f"PSI aligned {result.alignment['aligned']} customers")
    console.print(vertical_table(result))
    importance = importance_table(result.outcome.importance)
    if importance is not None:
        console.print(importance)
    paths = result.save(out_dir)
    for name, path in paths.items():
        console.print(f"{name}: {shown_path(path)}", markup=False, emoji=False)
    tracking_lines(result.tracking)


def _score_vertical(job: VerticalScoreJob, out_dir: Path) -> None:
    from fedsilo.vertical.scoring import prepare_vertical_score

    scoring = prepare_vertical_score(job)  # a configuration error stops here, before any bar
    console.print(
        f"[bold]fedsilo[/] scoring [bold]{escape(job.name)}[/] with the saved parts of "
        f"{escape(job.run)}"
    )
    with progress_bar(console) as progress:
        psi = progress.add_task("PSI alignment", total=5)

        def on_psi_step(step: str, done: int, total: int) -> None:
            progress.update(psi, completed=done, total=total, description=f"PSI: {step} done")

        result = scoring.run(on_psi_step=on_psi_step)
    counts = result.alignment
    unmatched = ", ".join(f"{plain(p)} {n}" for p, n in counts["unmatched"].items())
    console.print(
        f"scored {counts['aligned']} customers shared by every party "
        f"(not scored, unmatched rows per party: {unmatched})",
        markup=False,
    )
    for name, path in result.save(out_dir).items():
        console.print(f"{name}: {shown_path(path)}", markup=False, emoji=False)


def vertical_table(result: VerticalResult) -> Table:
    """Held-out metrics of the federated model (and the baseline), either algorithm."""
    from fedsilo.vertical.result import METRIC_KEYS, hosts_add

    table = Table(title=f"held-out metrics ({result.alignment['test']} aligned customers)")
    table.add_column("model")
    for k in METRIC_KEYS:
        table.add_column(k, justify="right")
    table.add_column("train auc", justify="right")
    trains = [result.outcome.train, result.baseline_train]
    for i, (name, metrics) in enumerate(result.table_rows()):
        train = trains[i] if i < len(trains) else None
        table.add_row(
            name.removesuffix(" (baseline)"),
            *(f"{metrics.get(k, float('nan')):.4f}" for k in METRIC_KEYS),
            "-" if train is None else f"{train.get('auc', float('nan')):.4f}",
            style="cyan" if i else None,
        )
    added = hosts_add(result.baseline, result.guest_only)
    if added and "auc" in added:
        table.caption = (
            f"the hosts' columns add {added['auc']:+.4f} held-out AUC (pooled vs guest only)"
        )
    return table


def _importance_cell(e: dict[str, Any]) -> str:
    """One feature's importance: its signed coefficient, its log-loss rise when permuted
    (signed: a shuffle can also help), or its split count and total gain."""
    if e.get("coefficient") is not None:
        return f"coef {e['coefficient']:+.3f}"
    if e.get("loss_increase") is not None:
        return f"log loss {e['loss_increase']:+.3g} permuted"
    return f"{e.get('splits', 0)} splits, gain {e.get('gain', 0.0):.3g}"


def _importance_total(total: dict[str, Any]) -> tuple[str, str]:
    """(what the total is, its cell): a hetero-LR or logreg total is a sum of absolute
    coefficients, so it has no sign; a sum of permuted log-loss rises may be negative."""
    if total.get("coefficient") is not None:
        return "sum of |coef|", f"{total['coefficient']:.3f}"
    if total.get("loss_increase") is not None:
        return "sum of log-loss rises (permuted)", f"{total['loss_increase']:+.3g}"
    return "splits, total gain", _importance_cell(total)


def _importance_rank(item: tuple[str, dict[str, Any]]) -> float:
    e = item[1]
    if e.get("coefficient") is not None:
        return -abs(e["coefficient"])
    return -float(e.get("gain", e.get("loss_increase", 0.0)))


def importance_table(importance: dict[str, Any] | None, *, top: int = 5) -> Table | None:
    """Per scope (a vertical party, or ``global`` for a horizontal model): its total, and its
    top features where the names were shared. Horizontal and vertical runs share this table."""
    if not importance:
        return None
    rows, measures = [], []
    for scope, entry in importance.items():
        measure, total = _importance_total(entry.get("total") or {})
        if measure not in measures:
            measures.append(measure)
        names = entry.get("by_feature")
        best = [
            i for i in sorted((names or {}).items(), key=_importance_rank) if _importance_rank(i)
        ]
        ranked = "; ".join(f"{n} ({_importance_cell(e)})" for n, e in best[:top]) or "none used"
        if not names:
            ranked = "names not shared"
        rows.append((plain(scope), str(entry.get("features", "")), total, plain(ranked)))
    table = Table(title="feature importance (names only where the party shares them)")
    for column in ("party", "features", " / ".join(measures), f"top {top}"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def datasets() -> None:
    """List the built-in datasets (shipped inside installed packages; nothing is downloaded)."""
    from fedsilo.data.builtin import BUILTIN_DATASETS

    table = Table(title="Built-in datasets")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in BUILTIN_DATASETS.items():
        table.add_row(name, description)
    console.print(table)
