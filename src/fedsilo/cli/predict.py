"""``fedsilo predict``: score new rows with a horizontal run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli.common import console, shown_path


def predict(
    run_dir: Annotated[
        Path, typer.Argument(help="run directory of a horizontal job (or its model.safetensors)")
    ],
    data: Annotated[Path, typer.Argument(help="rows to score: a .csv or .parquet file")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="where to write the predictions (.csv or .parquet)"),
    ] = Path("predictions.csv"),
) -> None:
    """Score new rows: the id column (if the job declared one), prediction, proba_<class>."""
    from fedsilo.predict import load_model

    model = load_model(run_dir)
    table = model.predict_file(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)
    console.print(
        f"scored {len(table):,} rows of {data} with {model.path} "
        f"(classes: {', '.join(model.classes)}); predictions: {shown_path(out)}",
        markup=False,
        highlight=False,
    )
