"""Command-line start-up: wall time of `fedsilo --help` and `fedsilo status`, medians.

Each command runs as a fresh process (`python -m fedsilo.cli ...`, the same sources as this
script), `--runs` times, and the median wall time is printed, beside the median of a bare
`python -c pass` (the interpreter's own start-up, the floor) in the same run. `status` talks
to a real server started by this script (TLS on 127.0.0.1, no job), so it pays for the
import of gRPC, the TLS handshake and the call.

Targets (issue 14 item 8, issue 15 item 4), on an idle machine: `--help` under 0.5 s,
`status` under 1 s. The admin commands import neither torch, pandas nor matplotlib
(tests/cli/test_light_imports.py checks that); this script shows what it is worth.

    .venv/bin/python bench/cli_startup.py            # 7 runs each
    .venv/bin/python bench/cli_startup.py --quick    # 3 runs each
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fedsilo
from fedsilo.deploy.certs import init_ca, issue
from fedsilo.deploy.config import ServerConfig, TlsConfig, token_sha256
from fedsilo.deploy.server import Server

SOURCES = str(Path(fedsilo.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SOURCES}
TOKEN = "bench-admin"


def timed(argv: list[str], runs: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``argv`` as a fresh process; fails loudly if it fails.

    CPU is the child's user + system time: on a busy machine it stays near the idle wall time
    while the wall time grows with the load.
    """
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, env=ENV, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    cli = [sys.executable, "-m", "fedsilo.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        init_ca(root / "ca")
        issue(root / "ca", root, "server", kind="server")
        server = Server(
            ServerConfig(
                listen="127.0.0.1:0",
                run_dir=root / "server",
                admin_token_sha256=token_sha256(TOKEN),
                tls=TlsConfig(cert=root / "server.pem", key=root / "server.key"),
            )
        )
        server.start()
        try:
            status = [
                *cli,
                "status",
                "--server",
                f"127.0.0.1:{server.port}",
                "--token",
                TOKEN,
                "--ca",
                str(root / "ca" / "ca.pem"),
                "--server-name",
                "localhost",
            ]
            rows = [
                ("python -c pass (floor)", timed([sys.executable, "-c", "pass"], runs), None),
                ("fedsilo --help", timed([*cli, "--help"], runs), 0.5),
                ("fedsilo status", timed(status, runs), 1.0),
            ]
        finally:
            server.stop(0)
    load = os.getloadavg()[0]
    print(f"median of {runs} runs each, load average {load:.2f} (targets: wall, idle machine)")
    print(f"{'command':<24} {'wall s':>7} {'CPU s':>7}  target")
    for name, (wall, cpu), target in rows:
        verdict = "" if target is None else f"< {target:g} s: {'ok' if wall < target else 'MISSED'}"
        print(f"{name:<24} {wall:7.3f} {cpu:7.3f}  {verdict}")


if __name__ == "__main__":
    main()
