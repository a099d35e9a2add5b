"""``fedsilo simulate`` for vertical jobs (``kind = "vertical"`` in the TOML)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedsilo.cli.common import progress_bar
from fedsilo.vertical.config import (
    VerticalAlgorithm,
    is_vertical,
    load_vertical_job,
    read_toml,
)
from fedsilo.vertical.result import METRIC_KEYS, VerticalResult


def is_vertical_file(path: Path) -> bool:
    """Whether ``path`` holds a vertical job; unreadable files are left to the normal loader."""
    try:
        return path.suffix == ".toml" and is_vertical(read_toml(path))
    except Exception:
        return False


def simulate_vertical_cli(
    job_file: Path, *, out: Path | None, seed: int | None, baseline: bool, console: Console
) -> None:
    from fedsilo.vertical.simulation import simulate_vertical

    job = load_vertical_job(job_file)
    if seed is not None:
        job = job.model_copy(update={"seed": seed})
    console.print(
        f"[bold]fedsilo[/] vertical [bold]{job.name}[/]: {job.algorithm.value} over "
        f"{job.he.scheme.value}, guest {job.guest.name}, hosts "
        f"{', '.join(h.name for h in job.hosts)}, seed {job.seed}"
    )

    with progress_bar(console) as progress:
        psi = progress.add_task("PSI alignment", total=5)
        boost = job.algorithm is VerticalAlgorithm.SECUREBOOST
        steps = job.secureboost.n_trees if boost else job.hetero_lr.epochs
        unit = "trees" if boost else "epochs"  # early stopping may end either sooner
        training = progress.add_task(unit, total=steps, start=False)

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

        result = simulate_vertical(
            job, baseline=baseline, on_epoch=on_epoch, on_tree=on_tree, on_psi_step=on_psi_step
        )
    console.print(f"PSI aligned {result.alignment['aligned']} customers")
    console.print(metrics_table(result))
    paths = result.save(out if out is not None else Path("runs") / job.name)
    for name, path in paths.items():
        console.print(f"{name}: {path}", emoji=False)


def metrics_table(result: VerticalResult) -> Table:
    """Held-out metrics of the federated model (and the baseline), either algorithm."""
    table = Table(title=f"held-out metrics ({result.alignment['test']} aligned customers)")
    table.add_column("model")
    for k in METRIC_KEYS:
        table.add_column(k, justify="right")
    table.add_column("train auc", justify="right")
    trains = [result.outcome.train, result.baseline_train]
    for i, ((name, metrics), train) in enumerate(zip(result.table_rows(), trains, strict=False)):
        table.add_row(
            name.removesuffix(" (baseline)"),
            *(f"{metrics.get(k, float('nan')):.4f}" for k in METRIC_KEYS),
            "-" if train is None else f"{train.get('auc', float('nan')):.4f}",
            style="cyan" if i else None,
        )
    return table
