"""Live status: the rows `fedsilo status` prints, `--watch` (tables refreshed in place on a
terminal, a plain snapshot per change otherwise), and the status page's access."""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsilo.cli.app import app
from fedsilo.deploy.config import RegisteredParty, ServerConfig, token_sha256
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.server import Server
from fedsilo.deploy.status_view import (
    ChangeLog,
    job_rows,
    loopback,
    party_rows,
    render_status_page,
    snapshot_lines,
)
from fedsilo.errors import ConfigError
from tests.deploy.harness import (
    ADMIN_TOKEN,
    NO_TTY_OVERRIDES,
    SOURCES,
    free_port,
    job_toml,
    running,
    submit,
)

ADMIN = ADMIN_TOKEN


def reply() -> pb.StatusReply:
    job = pb.JobStatus(
        job_id="j-1",
        name="banks",
        status="running",
        round=3,
        rounds=20,
        kind="horizontal",
        epsilon=1.25,
        delta=1e-5,
        round_s=0.8,
    )
    job.metrics.update({"accuracy": 0.91, "loss": 0.25})
    job.failures.update({"org-c": "fit: lost: no poll, reply or heartbeat for 31.0 s"})
    parties = [
        pb.PartyStatus(name="org-a", online=True, last_seen_s_ago=0.4, refused_calls=0),
        pb.PartyStatus(name="<b>org-c</b>", online=False, last_seen_s_ago=31.0, refused_calls=7),
    ]
    return pb.StatusReply(jobs=[job], parties=parties)


def test_rows_show_round_metrics_privacy_and_failures() -> None:
    (row,) = job_rows(reply())
    assert row[3:8] == (
        "running",
        "3/20",
        "0.8 s",
        "accuracy 0.9100 · loss 0.2500",
        "ε 1.25 (δ 1e-05)",
    )
    assert row[8] == "org-c: fit: lost: no poll, reply or heartbeat for 31.0 s"
    assert party_rows(reply())[1] == ("<b>org-c</b>", "no", "31.0 s ago", "7")


def test_page_escapes_names_and_refreshes_itself() -> None:
    html = render_status_page(reply(), server="127.0.0.1:50051")
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "&lt;b&gt;org-c&lt;/b&gt;" in html and "<b>org-c</b>" not in html
    assert "accuracy 0.9100" in html and "1 of 2" in html and "<script" not in html


def test_status_page_listens_on_loopback_only() -> None:
    assert loopback("127.0.0.1:8080") == ("127.0.0.1", 8080)
    with pytest.raises(ConfigError, match="loopback address only"):
        loopback("0.0.0.0:8080")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = ServerConfig(
        listen=f"127.0.0.1:{free_port()}",
        run_dir=tmp_path / "server",
        admin_token_sha256=token_sha256(ADMIN),
        parties=[RegisteredParty(name="org-a", token_sha256=token_sha256("t"))],
        status_page="127.0.0.1:0",
    )
    with running(config, insecure=True) as srv:
        yield srv


def _get(port: int, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if token is not None:
        basic = base64.b64encode(f"admin:{token}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_status_page_needs_the_admin_token(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.page is not None
    with caplog.at_level(logging.WARNING):
        assert _get(server.page.port, None)[0] == 401
        assert _get(server.page.port, "guess")[0] == 401
    assert "refused a status page request from 127.0.0.1" in caplog.text
    code, html = _get(server.page.port, ADMIN)
    assert code == 200 and "Coordinator 127.0.0.1" in html and "org-a" in html


UNSET_TTY = dict.fromkeys(NO_TTY_OVERRIDES)  # CliRunner's env: None unsets a variable


def _watch_args(server: Server, *more: str) -> list[str]:
    args = ["status", "--watch", *more, "--server", server.config.listen]
    return [*args, "--token", ADMIN, "--insecure"]


def test_status_watch_on_a_terminal_refreshes_its_tables_until_no_job_runs(server: Server) -> None:
    args = _watch_args(server, "--until-done", "--interval", "0.1")
    result = CliRunner().invoke(app, args, env={**UNSET_TTY, "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0, result.output
    assert "Parties" in result.output and "org-a" in result.output
    assert "calls refused" in result.output


def test_status_off_a_terminal_prints_the_plain_lines_of_the_watch_log(server: Server) -> None:
    args = ["status", "--server", server.config.listen, "--token", ADMIN, "--insecure"]

    result = CliRunner().invoke(app, args, env=UNSET_TTY)

    assert result.exit_code == 0, result.output
    heading, *rows = result.output.splitlines()
    assert heading.startswith(f"--- {server.config.listen} at ")
    assert rows == ["party: org-a | online: no | last seen: never | calls refused: 0"]


def test_status_on_a_terminal_prints_tables(server: Server) -> None:
    args = ["status", "--server", server.config.listen, "--token", ADMIN, "--insecure"]

    result = CliRunner().invoke(app, args, env={**UNSET_TTY, "TTY_COMPATIBLE": "1"})

    assert result.exit_code == 0, result.output
    assert "Parties" in result.output and "calls refused" in result.output
    assert "┃ party" in result.output and "party: org-a" not in result.output


def test_plain_snapshot_puts_every_cell_after_its_heading() -> None:
    lines = snapshot_lines(reply())
    job = "job: j-1 | name: banks | kind: horizontal | status: running | round: 3/20"
    job += " | last round: 0.8 s | metrics: accuracy 0.9100 · loss 0.2500 | privacy spent"
    assert lines[0].startswith(job)
    assert lines[1:] == [
        "party: org-a | online: yes | last seen: 0.4 s ago | calls refused: 0",
        "party: <b>org-c</b> | online: no | last seen: 31.0 s ago | calls refused: 7",
    ]


def test_change_log_skips_a_refresh_where_only_last_seen_ages_moved() -> None:
    log, first = ChangeLog(), reply()
    assert log.lines(first, heading="t0")[0] == "t0"
    older = reply()
    older.parties[0].last_seen_s_ago = 2.4
    assert log.lines(older, heading="t1") == []
    done = reply()
    done.jobs[0].status, done.jobs[0].round = "done", 20
    assert log.lines(done, heading="t2")[:2] == ["t2", snapshot_lines(done)[0]]


def test_change_log_writes_the_first_reply_after_an_outage_in_full() -> None:
    log = ChangeLog()
    log.lines(reply(), heading="t0")

    assert log.unreachable("unreachable since t1 (...)", heading="t1") == [
        "t1",
        "unreachable since t1 (...)",
    ]
    assert log.lines(reply(), heading="t2") == ["t2", *snapshot_lines(reply())]


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[Server]:
    """A server whose jobs fail after 3 s without their parties (none ever connects)."""
    config = ServerConfig(
        listen=f"127.0.0.1:{free_port()}",
        run_dir=tmp_path / "server",
        admin_token_sha256=token_sha256(ADMIN),
        parties=[RegisteredParty(name="org-a", token_sha256=token_sha256("t"))],
        wait_for_parties_s=3.0,
    )
    with running(config, insecure=True) as srv:
        yield srv


def test_status_watch_off_a_terminal_logs_a_snapshot_per_change_until_done(
    impatient_server: Server, tmp_path: Path
) -> None:
    job_id = submit(impatient_server, job_toml({"org-a": tmp_path / "a.csv"}, min_parties=1))
    args = _watch_args(impatient_server, "--until-done", "--interval", "0.1")

    result = CliRunner().invoke(app, args, env=UNSET_TTY)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    headings = [x for x in lines if x.startswith(f"--- {impatient_server.config.listen} at ")]
    job_lines = [x for x in lines if x.startswith(f"job: {job_id} |")]
    assert len(headings) == len(job_lines) >= 2  # running (or queued), then failed
    assert "| status: running |" in job_lines[-2] or "| status: queued |" in job_lines[-2]
    assert "| status: failed |" in job_lines[-1] and "parties connected" in job_lines[-1]
    assert len(headings) <= 3  # ~30 refreshes in those 3 s; only the changes are logged
    assert "party: org-a | online: no | last seen: never | calls refused: 0" in lines


def test_status_watch_piped_to_a_file_writes_while_it_runs(server: Server, tmp_path: Path) -> None:
    out, err = tmp_path / "watch.log", tmp_path / "watch.err"
    env = {k: v for k, v in os.environ.items() if k not in NO_TTY_OVERRIDES}
    # stderr to a file, not a pipe nobody reads while the watcher runs (a full pipe blocks
    # it); faulthandler: a watcher that ignores Ctrl-C dumps its threads there on SIGABRT
    # the watcher gets Ctrl-C as from a terminal: an ignored SIGINT is inherited (a library an
    # earlier test of this worker loaded had ignored it, and the watcher slept through Ctrl-C)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with out.open("wb") as sink, err.open("wb") as errors:
        try:
            watcher = subprocess.Popen(
                [
                    sys.executable,
                    "-X",
                    "faulthandler",
                    "-m",
                    "fedsilo.cli",
                    *_watch_args(server, "--interval", "0.2"),
                ],
                stdout=sink,
                stderr=errors,
                env={**env, "PYTHONPATH": SOURCES},
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        try:
            deadline = time.monotonic() + 60
            while "party: org-a" not in out.read_text() and time.monotonic() < deadline:
                assert watcher.poll() is None, err.read_text()
                time.sleep(0.2)
            logged = out.read_text()  # the watcher still runs (until Ctrl-C)
            assert watcher.poll() is None
        finally:
            watcher.send_signal(signal.SIGINT)
            try:
                watcher.wait(30)
            except subprocess.TimeoutExpired:
                watcher.send_signal(signal.SIGABRT)
                watcher.wait(30)
                pytest.fail(f"the watcher ignored Ctrl-C for 30 s; its stderr:\n{err.read_text()}")
    assert logged.startswith(f"--- {server.config.listen} at ")
    assert "party: org-a | online: no | last seen: never | calls refused: 0" in logged
    assert watcher.returncode == 0
