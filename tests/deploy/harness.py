"""Real processes on 127.0.0.1: a CA, a server and party processes, each `python -m fedsilo.cli`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import fedsilo
from fedsilo.data.builtin import load_builtin
from fedsilo.deploy.certs import init_ca, issue
from fedsilo.deploy.client import AdminClient
from fedsilo.deploy.config import RegisteredParty, ServerConfig, token_sha256
from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.server import Server

PARTIES = ("org-a", "org-b", "org-c")
ADMIN_TOKEN = "admin-secret"
FAST = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Child processes import the same fedsilo sources as the tests (a worktree run with
# PYTHONPATH=src, or the editable install in CI).
SOURCES = str(Path(fedsilo.__file__).resolve().parents[1])


def token(party: str) -> str:
    return f"token-of-{party}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_party_csvs(
    root: Path, parties: Sequence[str] = PARTIES, rows: int = 60
) -> dict[str, Path]:
    ds = load_builtin("breast-cancer")
    assert ds.features is not None
    table = ds.features.iloc[:, :6].assign(label=[ds.class_names[i] for i in ds.labels])
    order = np.random.default_rng(0).permutation(len(table))
    out = {}
    for i, p in enumerate(parties):
        path = root / f"{p}.csv"
        table.iloc[order[i * rows : (i + 1) * rows]].to_csv(path, index=False)
        out[p] = path
    return out


def job_toml(
    csvs: dict[str, Path], *, rounds: int = 5, min_parties: int = 2, timeout_s: float = 20
) -> str:
    parties = "".join(f'\n[[parties]]\nname = "{p}"\npath = "{path}"\n' for p, path in csvs.items())
    return f"""name = "deploy-test"
seed = 11
rounds = {rounds}

[data]
label = "label"
{parties}
[model]
name = "mlp"
hidden = [8]

[training]
epochs = 1
batch_size = 16
learning_rate = 0.1

[selection]
min_parties = {min_parties}
timeout_s = {timeout_s}
max_round_retries = 1
"""


@dataclass
class Deployment:
    root: Path
    port: int
    parties: Sequence[str] = PARTIES
    mtls: bool = True
    revoked: Sequence[str] = ()
    python: str = sys.executable  # the interpreter of the server and party processes
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    def make_pki(self, extra: Sequence[str] = ()) -> None:
        init_ca(self.root / "ca")
        issue(self.root / "ca", self.certs, "server", kind="server")
        for p in [*self.parties, *extra]:
            issue(self.root / "ca", self.certs, p, kind="party")
        issue(self.root / "ca", self.certs, "admin", kind="client")

    def write_server(
        self, *, job: Path | None = None, liveness_s: float = 10.0, wait_for_parties_s: float = 60
    ) -> Path:
        lines = [
            f'listen = "{self.address}"',
            f'run_dir = "{self.root / "server"}"',
            f'admin_token_sha256 = "{token_sha256(ADMIN_TOKEN)}"',
            "poll_s = 0.5",
            f"liveness_s = {liveness_s}",
            f"wait_for_parties_s = {wait_for_parties_s}",
        ]
        if job is not None:
            lines.append(f'job = "{job}"')
        lines += [
            "",
            "[tls]",
            f'cert = "{self.certs / "server.pem"}"',
            f'key = "{self.certs / "server.key"}"',
        ]
        if self.mtls:
            lines.append(f'client_ca = "{self.root / "ca" / "ca.pem"}"')
        for p in self.parties:
            lines += [
                "",
                "[[parties]]",
                f'name = "{p}"',
                f'token_sha256 = "{token_sha256(token(p))}"',
            ]
            if p in self.revoked:
                lines.append("revoked = true")
        path = self.root / "server.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def write_party(self, party: str, data: Path | None, extra: str = "") -> Path:
        lines = [
            f'name = "{party}"',
            f'server = "{self.address}"',
            f'token = "{token(party)}"',
            f'ca = "{self.root / "ca" / "ca.pem"}"',
            "max_backoff_s = 1.0",
            "heartbeat_s = 1.0",
        ]
        if data is not None:
            lines.append(f'data = "{data}"')
        identity = self.certs / f"{party}.identity.key"
        if identity.exists():  # written by make_pki (fedsilo certs issue party)
            lines += [
                f'secure_aggregation.identity_key = "{identity}"',
                f'secure_aggregation.roster = "{self.root / "ca" / "identities.toml"}"',
            ]
        if self.mtls:
            lines += [
                f'cert = "{self.certs / (party + ".pem")}"',
                f'key = "{self.certs / (party + ".key")}"',
            ]
        path = self.root / f"{party}.toml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path

    def spawn(
        self, key: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``fedsilo ARGS`` as process ``key`` (log: ``<key>.log``); ``env`` over ``FAST``."""
        log = (self.root / f"{key}.log").open("ab")
        proc = subprocess.Popen(
            [self.python, "-m", "fedsilo.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **FAST, **(env or {}), "PYTHONPATH": _pythonpath()},
        )
        self.procs[key] = proc
        return proc

    def start_server(self) -> subprocess.Popen[bytes]:
        return self.spawn("server", "server", "--config", str(self.root / "server.toml"))

    def start_party(self, party: str) -> subprocess.Popen[bytes]:
        return self.spawn(party, "party", "--config", str(self.root / f"{party}.toml"))

    def kill(self, key: str) -> None:
        proc = self.procs.pop(key)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def log(self, key: str) -> str:
        return (self.root / f"{key}.log").read_text(errors="replace")

    def admin(self) -> AdminClient:
        cert = (self.certs / "admin.pem", self.certs / "admin.key") if self.mtls else (None, None)
        return AdminClient(
            self.address, ADMIN_TOKEN, ca=self.root / "ca" / "ca.pem", cert=cert[0], key=cert[1]
        )

    def submit(self, job_text: str) -> str:
        """Submit a job with an admin client of its own; the job's id."""
        admin = self.admin()
        try:
            return admin.submit(job_text)
        finally:
            admin.close()

    def start_horizontal(
        self, csvs: Mapping[str, Path], *, extra: str = "", timeout_s: float = 240
    ) -> None:
        """PKI, the server, and a party process per ``csvs`` entry (its CSV, ``extra`` in its
        party.toml), the parties started before the server (they retry until it is up),
        waiting until all of them are online."""
        self.make_pki()
        self.write_server()
        for p in self.parties:
            self.write_party(p, csvs[p], extra=extra)
            self.start_party(p)
        self.start_server()
        self.wait_status(
            lambda s: sum(p.online for p in s.parties) == len(self.parties), timeout_s=timeout_s
        )

    def start_vertical(self, files: Mapping[str, Path], *, audit: bool = False) -> None:
        """PKI, the server, and a party process per ``files`` entry (its vertical data and
        its own models directory beside the run; with ``audit``, its audit log
        ``audit/<party>.jsonl``), waiting until all of them are online."""
        self.make_pki()
        self.write_server()
        for p in self.parties:
            models = self.root / f"models-{p}"
            log = f'\n[privacy]\naudit_log = "audit/{p}.jsonl"\n' if audit else ""
            self.write_party(
                p, None, extra=f'\n[vertical]\ndata = "{files[p]}"\nmodels = "{models}"\n' + log
            )
        self.start_server()
        for p in self.parties:
            self.start_party(p)
        self.wait_status(lambda s: sum(p.online for p in s.parties) == len(self.parties))

    def wait_status(
        self, accept: Callable[[pb.StatusReply], bool], timeout_s: float = 240
    ) -> pb.StatusReply:
        deadline = time.monotonic() + timeout_s
        client = self.admin()
        last: pb.StatusReply | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    last = client.status(timeout_s=5)
                    if accept(last):
                        return last
                except Exception:
                    pass
                time.sleep(0.3)
        finally:
            client.close()
        logs = "\n".join(
            f"--- {k}\n{self.log(k)[-3000:]}"
            for k in ["server", *self.parties]
            if (self.root / f"{k}.log").exists()
        )
        raise AssertionError(f"status condition not met within {timeout_s} s; last: {last}\n{logs}")

    def stop_all(self) -> None:
        for key in list(self.procs):
            proc = self.procs.pop(key)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _pythonpath() -> str:
    rest = os.environ.get("PYTHONPATH")
    return SOURCES if not rest else f"{SOURCES}{os.pathsep}{rest}"


def local_server_config(root: Path, parties: Sequence[str], **settings: object) -> ServerConfig:
    """An in-process server on a free port of 127.0.0.1, its run directory under ``root``:
    the admin token is ``ADMIN_TOKEN``, party ``p``'s is ``token(p)``; ``settings`` are the
    other fields (limits, poll_s, ...)."""
    return ServerConfig(
        listen=f"127.0.0.1:{free_port()}",
        run_dir=root / "server",
        admin_token_sha256=token_sha256(ADMIN_TOKEN),
        parties=[RegisteredParty(name=p, token_sha256=token_sha256(token(p))) for p in parties],
        **settings,  # type: ignore[arg-type]
    )


NO_TTY_OVERRIDES = ("FORCE_COLOR", "TTY_COMPATIBLE")  # Rich's "is a terminal": unset them


def submit(server: Server, text: str) -> str:
    """Submit job ``text`` to an in-process server (plaintext, the admin token); its id."""
    admin = AdminClient(server.config.listen, ADMIN_TOKEN, ca=None, insecure=True)
    try:
        return admin.submit(text)
    finally:
        admin.close()


@contextmanager
def running(config: ServerConfig, *, insecure: bool = False) -> Iterator[Server]:
    """A server of ``config`` in this process, started, and stopped (no grace) on exit."""
    srv = Server(config, insecure=insecure)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(0)


@contextmanager
def deployment(root: Path, **kwargs: object) -> Iterator[Deployment]:
    dep = Deployment(root, free_port(), **kwargs)  # type: ignore[arg-type]
    try:
        yield dep
    finally:
        dep.stop_all()


def loose_modes(*paths: Path) -> list[str]:
    """Files not 0600 and directories not 0700 under ``paths`` (each a file or a directory)."""
    found = []
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            want = 0o700 if path.is_dir() else 0o600
            mode = path.stat().st_mode & 0o777
            if mode != want:
                found.append(f"{path} is {mode:o}, expected {want:o}")
    return found


def job_done(job_id: str) -> Callable[[pb.StatusReply], bool]:
    def check(reply: pb.StatusReply) -> bool:
        job = next((j for j in reply.jobs if j.job_id == job_id), None)
        if job is not None and job.status == "failed":
            raise AssertionError(f"job failed: {job.error}")
        return job is not None and job.status == "done"

    return check
