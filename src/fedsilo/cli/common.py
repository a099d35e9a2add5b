"""What every ``fedsilo`` command shares: consoles, the one error handler, admin options.

The error handler lives in :class:`FedsiloGroup`, the click group class of every Typer app
here: a :class:`~fedsilo.errors.FedsiloError` raised anywhere below a command prints one
plain-text line ``ErrorName: message`` on stderr and exits with status 2, no traceback.
Messages are printed verbatim (never parsed as Rich markup), so ``[data]`` or
``BINS=[0, 1]`` inside a message survive.
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from fedsilo.errors import ConfigError, FedsiloError

if TYPE_CHECKING:
    from fedsilo.deploy.client import AdminClient

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_FEDSILO_ERROR = 2


def error_text(exc: BaseException) -> str:
    """``ErrorName: message``: how every fedsilo error reaches a person."""
    return f"{type(exc).__name__}: {exc}"


def print_error(text: str, *, prefix: str = "") -> None:
    """Print ``prefix`` in bold red, then ``text`` verbatim (no markup, no highlighting)."""
    if prefix:
        err_console.print(prefix, style="bold red", end=" ", markup=False, highlight=False)
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def shown_path(path: str | Path) -> str:
    """Where a file was written, as a person should read it: relative to the current directory
    when it is inside it, else absolute, with no ``.`` or ``..`` segments.

    The ``..`` segments are folded as written (``runs/a/../b`` is ``runs/b``) unless a symlink
    before one of them makes that another place; the path then shows where the file really is.
    """
    real = Path(path).resolve()
    folded = Path(os.path.abspath(path))  # from the current directory, '.' and '..' folded
    full = folded if folded.resolve() == real else real
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


def print_warning(text: str) -> None:
    err_console.print("WARNING:", style="bold yellow", end=" ", markup=False, highlight=False)
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


class FedsiloGroup(TyperGroup):
    """The click group of every fedsilo Typer app: one handler for :class:`FedsiloError`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FedsiloError as exc:
            name, _, message = error_text(exc).partition(": ")
            print_error(message, prefix=f"{name}:")
            raise typer.Exit(EXIT_FEDSILO_ERROR) from None


def make_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """A Typer app (root or sub-command group) with fedsilo's error handler."""
    return typer.Typer(
        cls=FedsiloGroup,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        **kwargs,
    )


def progress_bar(target: Console) -> Progress:
    """The bar every long CLI run shows: description, bar, done/total, elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=target,
    )


#: ``--out DIR`` of every command that writes a run directory
OutDir = Annotated[
    Path | None, typer.Option("--out", "-o", help="output directory [default: runs/<job name>]")
]


def round_reporter(progress: Progress, task: TaskID) -> Callable[[Any], None]:
    """``on_round`` for a horizontal run: one line per round (loss, accuracy, dropouts)."""

    def on_round(record: Any) -> None:
        g = record.global_metrics
        dropped = f"  dropped: {', '.join(sorted(record.failures))}" if record.failures else ""
        progress.console.print(
            f"round {record.round:>3}  loss {fmt(g.get('loss'))}  "
            f"accuracy {fmt(g.get('accuracy'))}  ({record.duration_s:.2f} s){dropped}",
            markup=False,
        )
        progress.advance(task)

    return on_round


def warning_reporter(progress: Progress) -> Callable[[str], None]:
    """``on_warning`` for a run: ``WARNING: <text>`` among its lines, the text verbatim."""

    def on_warning(text: str) -> None:
        progress.console.print(Text.assemble(("WARNING:", "bold yellow"), " ", text))

    return on_warning


def plain(value: object) -> Text:
    """A table cell or line shown verbatim: text from data or from a party is never markup."""
    return Text(str(value))


E = TypeVar("E", bound=enum.Enum)


def enum_option(enum_cls: type[E], flag: str, help_text: str) -> Any:
    """A Typer option whose value is a member of ``enum_cls`` (named by its value); a wrong value
    is refused with ``FLAG must be a, b or c, got 'x'``."""
    values = [str(m.value) for m in enum_cls]
    choices = ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]

    def parse(text: str | E) -> E:
        if isinstance(text, enum_cls):
            return text
        try:
            return enum_cls(text)
        except ValueError:
            raise typer.BadParameter(f"{flag} must be {choices}, got {text!r}") from None

    return typer.Option(flag, parser=parse, metavar="|".join(values), help=help_text)


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


# -- one set of admin connection options (submit, status, query --server) --------------------
@dataclass(frozen=True)
class AdminConnection:
    """How an admin command reaches a running server (``--server``, ``--token``, TLS files)."""

    server: str | None
    token: str | None
    ca: Path | None
    server_name: str | None
    insecure: bool
    cert: Path | None
    key: Path | None

    def client(self) -> AdminClient:
        from fedsilo.deploy.client import AdminClient

        if not self.server:
            raise ConfigError("no server address: pass --server HOST:PORT")
        if not self.token:
            raise ConfigError("no admin token: pass --token or set FEDSILO_ADMIN_TOKEN")
        if (self.cert is None) != (self.key is None):  # gRPC aborts the process on half a pair
            raise ConfigError(
                "a client certificate needs both files: pass --cert CERT.pem and --key KEY.pem "
                "together"
            )
        return AdminClient(
            self.server,
            self.token,
            ca=self.ca,
            cert=self.cert,
            key=self.key,
            server_name=self.server_name,
            insecure=self.insecure,
        )


def _admin_parameters(server_help: str, server_required: bool) -> list[inspect.Parameter]:
    server_type: Any = str if server_required else (str | None)
    server_opt = typer.Option("--server", "-s", help=server_help)
    specs: list[tuple[str, Any, Any, Any]] = [
        ("server", server_type, server_opt, inspect.Parameter.empty if server_required else None),
        (
            "token",
            str | None,
            typer.Option("--token", envvar="FEDSILO_ADMIN_TOKEN", help="admin token"),
            None,
        ),
        (
            "ca",
            Path | None,
            typer.Option("--ca", help="CA certificate that signed the server's certificate"),
            None,
        ),
        (
            "server_name",
            str | None,
            typer.Option("--server-name", help="TLS name to check, if not the host dialled"),
            None,
        ),
        ("insecure", bool, typer.Option("--insecure", help="plaintext gRPC"), False),
        (
            "cert",
            Path | None,
            typer.Option("--cert", help="client certificate, when the server requires mTLS"),
            None,
        ),
        ("key", Path | None, typer.Option("--key", help="client certificate's private key"), None),
    ]
    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, opt]
        )
        for name, kind, opt, default in specs
    ]


F = TypeVar("F", bound=Callable[..., Any])


def admin_options(
    *, server_help: str = "coordinator address host:port", server_required: bool = True
) -> Callable[[F], F]:
    """Give a command the admin connection options; it receives them as ``admin=AdminConnection``.

    A failed admin call prints one error line (a refused TLS handshake diagnosed, with the
    option to fix); gRPC's own log of it ("I... Handshake failed with error SSL_ERROR_SSL ...")
    is not printed above it unless ``GRPC_VERBOSITY`` asks for it. gRPC reads that variable
    when it is imported, which no fedsilo command module does before the command runs.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "admin"]
        extra = _admin_parameters(server_help, server_required)
        names = [p.name for p in extra]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
            admin = AdminConnection(**{n: kwargs.pop(n) for n in names})
            return func(*args, admin=admin, **kwargs)

        params = [*own, *extra]
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # Typer must see the new signature
        return wrapper  # type: ignore[return-value]

    return decorate
