"""The ``fedsilo`` command line: one Typer app, its sub-command groups, ``--version``.

    fedsilo simulate JOB.toml --out DIR [--rounds N] [--seed S] [--baseline]
    fedsilo query JOB.toml "SELECT ..." [--format table|csv|json] [--html FILE] [--server ...]
    fedsilo predict RUN_DIR DATA.csv|.parquet [--out predictions.csv]
    fedsilo datasets
    fedsilo server / party / submit / status          (deployment)
    fedsilo privacy plan / privacy audit              (DP budgets, empirical audit)
    fedsilo audit verify / audit show                 (audit logs)
    fedsilo certs init / issue                        (TLS certificates)

Errors that fedsilo raises on purpose (bad config, bad data) print one plain-text line and
exit with status 2; no traceback (:mod:`fedsilo.cli.common`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from fedsilo import __version__
from fedsilo.cli import deploy, predict, query, simulate
from fedsilo.cli.certs import certs_app
from fedsilo.cli.common import console, make_app
from fedsilo.cli.privacy import audit_app, privacy_app

app = make_app("Federated learning across organizations that never pool their rows.")


def _show_version(value: bool) -> None:
    if value:
        console.print(f"fedsilo {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Federated learning across organizations that never pool their rows."""


app.command("simulate")(simulate.simulate)
app.command("datasets")(simulate.datasets)
app.command("predict")(predict.predict)
app.command("query")(query.query)
app.command("server")(deploy.server)
app.command("party")(deploy.party)
app.command("submit")(deploy.submit)
app.command("status")(deploy.status)
app.add_typer(privacy_app, name="privacy")
app.add_typer(audit_app, name="audit")
app.add_typer(certs_app, name="certs")


def main() -> None:
    app()
