"""A running server's status for people: ``fedsilo status [--watch]`` and the status page.

One formatting of a :class:`~fedsilo.deploy.proto.fedsilo_pb2.StatusReply` into rows (jobs:
round, the last round's duration and global metrics, privacy spent, failures; parties:
online, last seen, calls refused for limits), used by the command line's tables, by the plain
lines ``fedsilo status`` (and ``--watch``) writes when its output is not a terminal
(:class:`ChangeLog`), and by the read-only HTML page (``templates/status.html.j2``, through
the one page writer :func:`~fedsilo.report.html.render_page`).

The page (``status_page = "127.0.0.1:8080"`` in ``server.toml``) is served over plain HTTP on
the loopback interface only, behind the admin token (HTTP Basic: any user name, the token as
password; compared by hash, failures throttled per address like gRPC calls). It refreshes
itself every few seconds; reach it from elsewhere through an SSH tunnel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from fedsilo import __version__
from fedsilo.deploy.auth import Refusal
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.errors import ConfigError

if TYPE_CHECKING:  # `fedsilo status` imports this module and stays light
    from fedsilo.deploy.limits import CallLimiter

log = logging.getLogger(__name__)

JOB_HEAD = (
    "job",
    "name",
    "kind",
    "status",
    "round",
    "last round",
    "metrics",
    "privacy spent",
    "failures / error / results",
)
PARTY_HEAD = ("party", "online", "last seen", "calls refused")
REFRESH_S = 2


def _metrics(job: pb.JobStatus) -> str:
    shown = [m for m in ("accuracy", "auc", "loss") if m in job.metrics] or sorted(job.metrics)
    return " · ".join(f"{m} {job.metrics[m]:.4f}" for m in shown[:3]) or "–"


def _privacy(job: pb.JobStatus) -> str:
    if job.epsilon < 0:
        return "no DP"
    return f"ε {job.epsilon:.3g} (δ {job.delta:.0e})"


def _failures(job: pb.JobStatus) -> str:
    if job.error:
        return job.error
    if job.failures:
        return "; ".join(f"{p}: {why}" for p, why in sorted(job.failures.items()))
    return job.run_dir or ""


def job_rows(reply: pb.StatusReply) -> list[tuple[str, ...]]:
    """One row per job, in :data:`JOB_HEAD` order (plain text)."""
    return [
        (
            j.job_id,
            j.name,
            j.kind or "horizontal",
            j.status,
            f"{j.round}/{j.rounds}",
            f"{j.round_s:.1f} s" if j.round_s > 0 else "–",
            _metrics(j),
            _privacy(j),
            _failures(j),
        )
        for j in reply.jobs
    ]


def party_rows(reply: pb.StatusReply) -> list[tuple[str, ...]]:
    """One row per registered party, in :data:`PARTY_HEAD` order (plain text)."""
    return [
        (
            p.name,
            "yes" if p.online else "no",
            "never" if p.last_seen_s_ago < 0 else f"{p.last_seen_s_ago:.1f} s ago",
            str(p.refused_calls),
        )
        for p in reply.parties
    ]


def snapshot_lines(reply: pb.StatusReply) -> list[str]:
    """The rows as plain lines, one per job and party, each cell after its heading
    (``job: j-1 | name: banks | ... | round: 3/20 | ...``): what ``fedsilo status --watch``
    writes when its output is not a terminal, a log one can read and grep."""

    def line(head: tuple[str, ...], row: tuple[str, ...]) -> str:
        return " | ".join(f"{h}: {c}" for h, c in zip(head, row, strict=True) if c)

    jobs = [line(JOB_HEAD, row) for row in job_rows(reply)]
    return [*jobs, *(line(PARTY_HEAD, row) for row in party_rows(reply))]


def stamp(at_s: float) -> str:
    """A time (seconds since the epoch) as the plain log writes it: local, with its offset."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(at_s))


class ChangeLog:
    """``fedsilo status`` off a terminal: the plain lines of the first reply and, with
    ``--watch``, of each reply whose rows changed. The parties' last-seen ages are left out of
    the comparison (they change at every refresh), so an idle server adds nothing to the log."""

    def __init__(self) -> None:
        self._shown: tuple[tuple[str, ...], ...] | None = None

    def lines(self, reply: pb.StatusReply, *, heading: str) -> list[str]:
        """``heading`` and :func:`snapshot_lines` if anything changed since the last; else []."""
        ages_aside = ((p[0], p[1], p[3]) for p in party_rows(reply))
        rows = (*job_rows(reply), *ages_aside)
        if rows == self._shown:
            return []
        self._shown = rows
        return [heading, *snapshot_lines(reply)]

    def unreachable(self, sentence: str, *, heading: str) -> list[str]:
        """``heading`` and ``sentence`` (the server stopped answering: since when, why); the
        first reply after it is written in full, changed or not, to show the server is back."""
        self._shown = None
        return [heading, sentence]


def render_status_page(reply: pb.StatusReply, *, server: str, refresh_s: int = REFRESH_S) -> str:
    """The status page (self-contained HTML, refreshed by the browser every ``refresh_s``)."""
    from fedsilo.report.html import render_page  # jinja2 only when a page is asked for

    running = [j for j in reply.jobs if j.status == "running"]
    online = sum(p.online for p in reply.parties)
    meta = [
        ("Server", server),
        ("Parties online", f"{online} of {len(reply.parties)}"),
        ("Jobs running", str(len(running))),
        ("Refreshes", f"every {refresh_s} s"),
    ]
    return render_page(
        "status.html.j2",
        title=f"fedsilo status · {server}",
        eyebrow="server status",
        heading=f"Coordinator {server}",
        meta=meta,
        source=f"the running server at {server}",
        version=__version__,
        refresh_s=refresh_s,
        job_head=JOB_HEAD,
        jobs=[(j[3], j) for j in job_rows(reply)],
        party_head=PARTY_HEAD,
        parties=[("online" if p[1] == "yes" else "offline", p) for p in party_rows(reply)],
    )


def loopback(address: str) -> tuple[str, int]:
    """``host:port`` of the status page; only a loopback address is accepted."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        number = int(port)
    except ValueError:
        local, number = False, -1
    if not local or not 0 <= number < 65536:
        raise ConfigError(
            f"status_page = {address!r}: the status page is plain HTTP and listens on a "
            'loopback address only (e.g. "127.0.0.1:8080"); reach it through an SSH tunnel'
        )
    return host, number


class StatusPage:
    """The read-only status page, on its own thread; every request needs the admin token."""

    def __init__(
        self,
        address: str,
        snapshot: Callable[[], pb.StatusReply],
        admin_token_sha256: str,
        limiter: CallLimiter,
        *,
        server: str,
    ) -> None:
        host, port = loopback(address)
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("status page: " + format, *args)

        self._snapshot = snapshot
        self._admin = admin_token_sha256
        self._limiter = limiter
        self._server = server
        self._http = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="fedsilo-status-page", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("status page on http://127.0.0.1:%d/ (admin token as the password)", self.port)

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _authorized(self, header: str | None) -> bool:
        if header is None or not header.startswith("Basic "):
            return False
        try:
            _, _, token = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        return hmac.compare_digest(digest, self._admin)

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        address = request.client_address[0]
        try:
            self._limiter.check_address(address)
        except Refusal as exc:
            self._send(request, 429, exc.reason.encode(), "text/plain; charset=utf-8")
            return
        if not self._authorized(request.headers.get("Authorization")):
            self._limiter.auth_failed(address)
            log.warning("refused a status page request from %s: no or wrong admin token", address)
            self._send(request, 401, b"admin token needed\n", "text/plain; charset=utf-8")
            return
        if request.path not in ("/", "/index.html"):
            self._send(request, 404, b"not found\n", "text/plain; charset=utf-8")
            return
        html = render_status_page(self._snapshot(), server=self._server)
        self._send(request, 200, html.encode("utf-8"), "text/html; charset=utf-8")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, kind: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.send_header("X-Frame-Options", "DENY")
        if code == 401:
            request.send_header("WWW-Authenticate", 'Basic realm="fedsilo admin"')
        request.end_headers()
        request.wfile.write(body)
