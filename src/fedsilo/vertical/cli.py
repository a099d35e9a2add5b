"""``fedsilo simulate`` for vertical jobs (``kind = "vertical"`` in the TOML)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedsilo.vertical.config import is_vertical, load_vertical_job, read_toml


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

    def on_epoch(epoch: int, loss: float, seconds: float) -> None:
        console.print(f"epoch {epoch:>3}  Taylor loss {loss:.6f}  ({seconds:.2f} s)")

    result = simulate_vertical(job, baseline=baseline, on_epoch=on_epoch)
    table = Table(title=f"held-out metrics ({result.alignment['test']} aligned customers)")
    table.add_column("model")
    keys = ("auc", "ks", "accuracy", "f1")
    for k in keys:
        table.add_column(k, justify="right")
    table.add_row("hetero LR", *(f"{result.metrics.get(k, float('nan')):.4f}" for k in keys))
    if result.baseline is not None:
        table.add_row(
            "centralized LR",
            *(f"{result.baseline.get(k, float('nan')):.4f}" for k in keys),
            style="cyan",
        )
    console.print(f"PSI aligned {result.alignment['aligned']} customers")
    console.print(table)
    paths = result.save(out if out is not None else Path("runs") / job.name)
    for name, path in paths.items():
        console.print(f"{name}: {path}", emoji=False)
