"""Live status: the rows `fedsilo status` prints, `--watch`, and the status page's access."""

from __future__ import annotations

import base64
import logging
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
from fedsilo.deploy.status_view import job_rows, loopback, party_rows, render_status_page
from fedsilo.errors import ConfigError
from tests.deploy.harness import free_port, running

ADMIN = "admin-secret"


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


def test_status_watch_renders_until_no_job_runs(server: Server) -> None:
    args = ["status", "--watch", "--until-done", "--interval", "0.1"]
    args += ["--server", server.config.listen, "--token", ADMIN, "--insecure"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Parties" in result.output and "org-a" in result.output
    assert "calls refused" in result.output
