"""`fedsilo status --watch` rides out a server that stops answering (a restart: UNAVAILABLE),
saying once since when, and ends at once on what retrying cannot fix (a refused token)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsilo.cli.app import app
from fedsilo.cli.common import console
from fedsilo.deploy.client import AdminClient
from fedsilo.deploy.config import RegisteredParty, ServerConfig, token_sha256
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.server import Server
from fedsilo.deploy.status_watch import Outage, StatusWatch, retrying_helps
from fedsilo.errors import AdminCallError
from tests.deploy.harness import (
    ADMIN_TOKEN,
    NO_TTY_OVERRIDES,
    SOURCES,
    Deployment,
    deployment,
    free_port,
    job_toml,
    running,
    submit,
)


def _config(root: Path, *, wait_for_parties_s: float = 60.0) -> ServerConfig:
    return ServerConfig(
        listen=f"127.0.0.1:{free_port()}",
        run_dir=root / "server",
        admin_token_sha256=token_sha256(ADMIN_TOKEN),
        parties=[RegisteredParty(name="org-a", token_sha256=token_sha256("t"))],
        wait_for_parties_s=wait_for_parties_s,
    )


def _failure(address: str, token: str = ADMIN_TOKEN) -> AdminCallError:
    """The error a real status call to ``address`` fails with."""
    client = AdminClient(address, token, ca=None, insecure=True)
    try:
        client.status(timeout_s=10)
    except AdminCallError as exc:
        return exc
    finally:
        client.close()
    raise AssertionError(f"status on {address} did not fail")


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> AdminCallError:
    """A status call with the wrong admin token (UNAUTHENTICATED)."""
    with running(_config(tmp_path_factory.mktemp("refusing")), insecure=True) as srv:
        return _failure(srv.config.listen, token="wrong")


@pytest.fixture(scope="module")
def down() -> AdminCallError:
    """A status call to a port nothing listens on (UNAVAILABLE)."""
    return _failure(f"127.0.0.1:{free_port()}")


def test_only_an_unavailable_server_is_worth_asking_again(
    down: AdminCallError, refused: AdminCallError
) -> None:
    assert "(UNAVAILABLE)" in str(down) and retrying_helps(down)
    assert "(UNAUTHENTICATED)" in str(refused) and not retrying_helps(refused)
    assert not retrying_helps(AdminCallError("not from a gRPC call"))


def _job(status: str) -> pb.StatusReply:
    return pb.StatusReply(jobs=[pb.JobStatus(job_id="j-1", status=status, round=1, rounds=5)])


class Recorded:
    """A view that records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[str | Outage] = []

    def show(self, reply: pb.StatusReply) -> None:
        self.seen.append(reply.jobs[0].status)

    def unreachable(self, outage: Outage) -> None:
        self.seen.append(outage)


def _polls(*answers: pb.StatusReply | AdminCallError) -> Callable[[], pb.StatusReply]:
    left = list(answers)

    def poll() -> pb.StatusReply:
        answer = left.pop(0)
        if isinstance(answer, AdminCallError):
            raise answer
        return answer

    return poll


def test_an_outage_is_shown_once_and_the_watch_goes_on_when_the_server_answers(
    down: AdminCallError,
) -> None:
    # Arrange: three failed calls between two replies; the clock moves 2 s per sleep
    now = [1000.0]
    poll = _polls(down, down, down, _job("running"), _job("done"))
    watch = StatusWatch(
        poll,
        interval_s=2.0,
        until_done=True,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    view = Recorded()

    # Act
    watch.follow(_job("running"), view)

    # Assert
    assert view.seen == [Outage(since_s=1002.0, error=str(down), interval_s=2.0), "running", "done"]
    sentence = Outage(since_s=1002.0, error=str(down), interval_s=2.0).sentence()
    assert sentence.startswith("unreachable since ") and "(UNAVAILABLE)" in sentence
    assert sentence.endswith("; asking again every 2 s")


def test_a_refused_call_ends_the_watch_at_once(
    down: AdminCallError, refused: AdminCallError
) -> None:
    watch = StatusWatch(
        _polls(down, refused, _job("done")), interval_s=2.0, until_done=True, sleep=lambda s: None
    )
    view = Recorded()

    with pytest.raises(AdminCallError, match="UNAUTHENTICATED"):
        watch.follow(_job("running"), view)
    assert len(view.seen) == 1 and isinstance(view.seen[0], Outage)


def test_watch_of_a_server_that_is_not_there_fails_at_once() -> None:
    args = ["status", "--watch", "--server", f"127.0.0.1:{free_port()}", "--insecure"]

    result = CliRunner().invoke(app, [*args, "--token", ADMIN_TOKEN])

    assert result.exit_code == 2
    assert "(UNAVAILABLE)" in result.output and "unreachable since" not in result.output


def _watcher(
    address: str, log: Path, *tls: str, interval_s: float = 0.3
) -> subprocess.Popen[bytes]:
    """``fedsilo status --watch --until-done`` in its own process, its output a file."""
    env = {k: v for k, v in os.environ.items() if k not in NO_TTY_OVERRIDES}
    args = ["status", "--watch", "--until-done", "--interval", str(interval_s)]
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "fedsilo.cli", *args, "--server", address, *tls],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONPATH": SOURCES, "FEDSILO_ADMIN_TOKEN": ADMIN_TOKEN},
        )


def _wait_for(text: str, log: Path, watcher: subprocess.Popen[bytes], timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in (logged := log.read_text()):
        assert watcher.poll() is None, f"the watch ended (exit {watcher.returncode}):\n{logged}"
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout_s} s:\n{logged}"
        time.sleep(0.1)
    return logged


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    with deployment(tmp_path, parties=("org-a",)) as dep:
        dep.make_pki()
        yield dep


@pytest.mark.slow  # a server process started twice
def test_watch_until_done_outlives_a_restart_of_the_server_process(
    dep: Deployment, tmp_path: Path
) -> None:
    # Arrange: a real server whose job waits for a party that never comes
    dep.write_server(wait_for_parties_s=120)
    dep.start_server()
    dep.wait_status(lambda s: True, timeout_s=60)
    job_id = dep.submit(job_toml({"org-a": tmp_path / "a.csv"}, min_parties=1))
    log = tmp_path / "watch.log"
    tls = ["--ca", str(dep.root / "ca" / "ca.pem")]
    tls += ["--cert", str(dep.certs / "admin.pem"), "--key", str(dep.certs / "admin.key")]
    watcher = _watcher(dep.address, log, *tls)
    try:
        _wait_for(f"job: {job_id} |", log, watcher)

        # Act: kill the server while the job runs, start it again (it resumes the job,
        # which now gives up on its party after 1 s: failed, and the watch is done)
        dep.kill("server")
        _wait_for("unreachable since", log, watcher)
        dep.write_server(wait_for_parties_s=1)
        dep.start_server()
        watcher.wait(60)
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(30)
    logged = log.read_text()

    # Assert: one line for the outage (~10 failed calls), then the job to its end
    assert watcher.returncode == 0, logged
    (outage,) = [x for x in logged.splitlines() if "unreachable since" in x]
    assert outage.startswith("unreachable since ") and "(UNAVAILABLE)" in outage
    after = logged.split(outage + "\n", 1)[1].splitlines()
    assert after[0].startswith(f"--- {dep.address} at ")
    job_lines = [x for x in after if x.startswith(f"job: {job_id} |")]
    assert "| status: failed |" in job_lines[-1] and "parties connected" in job_lines[-1]
    assert "Traceback" not in logged and "AdminCallError" not in logged


def test_watch_ends_when_the_restarted_server_refuses_its_token(tmp_path: Path) -> None:
    config = _config(tmp_path)
    rotated = config.model_copy(update={"admin_token_sha256": token_sha256("rotated")})
    log = tmp_path / "watch.log"
    srv = Server(config, insecure=True)
    srv.start()
    watcher: subprocess.Popen[bytes] | None = None
    try:
        submit(srv, job_toml({"org-a": tmp_path / "a.csv"}, min_parties=1))
        watcher = _watcher(config.listen, log, "--insecure")
        _wait_for("job: ", log, watcher)
        srv.stop(0)
        srv = Server(rotated, insecure=True)  # back, with another admin token
        srv.start()
        watcher.wait(60)
    finally:
        srv.stop(0)
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()

    assert watcher.returncode == 2, log.read_text()
    assert "AdminCallError" in log.read_text() and "(UNAUTHENTICATED)" in log.read_text()


def test_live_watch_shows_since_when_the_server_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an in-process server with a job waiting for a party that never comes (it
    # fails once the server stops, or 3 s after a start); the watch's status calls are
    # recorded, to stop the server once the watch has begun and restart it once it noticed
    config = _config(tmp_path, wait_for_parties_s=3.0)
    answered, failed = threading.Event(), threading.Event()
    calls: list[str] = []
    status = AdminClient.status

    def counted(self: AdminClient, *, timeout_s: float = 30.0) -> pb.StatusReply:
        try:
            reply = status(self, timeout_s=timeout_s)
        except AdminCallError:
            calls.append("failed")
            failed.set()
            raise
        calls.append("answered")
        answered.set()
        return reply

    monkeypatch.setattr(AdminClient, "status", counted)
    monkeypatch.setattr(console, "is_interactive", True)  # fixed when the console was made
    first = Server(config, insecure=True)
    first.start()
    submit(first, job_toml({"org-a": tmp_path / "a.csv"}, min_parties=1))
    restarted: list[Server] = []

    def restart() -> None:
        answered.wait(30)
        first.stop(0)
        failed.wait(30)
        time.sleep(1.0)  # the live view redraws 4 times a second
        again = Server(config, insecure=True)
        again.start()
        restarted.append(again)

    mover = threading.Thread(target=restart, daemon=True)
    args = ["status", "--watch", "--until-done", "--interval", "0.2"]
    args += ["--server", config.listen, "--token", ADMIN_TOKEN, "--insecure"]
    env = {**dict.fromkeys(NO_TTY_OVERRIDES), "TTY_COMPATIBLE": "1"}

    # Act
    mover.start()
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        mover.join(60)
        for srv in [first, *restarted]:
            srv.stop(0)

    # Assert: the outage was shown in the live view, and the watch went on to the job's end
    # (the job was running when the server stopped: only the restarted one said it ended)
    assert result.exit_code == 0, result.output
    assert "unreachable since" in result.output and "(UNAVAILABLE)" in result.output
    assert restarted and calls[0] == calls[-1] == "answered" and "failed" in calls
