"""A deployment under load: 30 parties, 20 rounds, beside a CPU hog and a flooding party.

One real server (TLS on 127.0.0.1, the limits of ``server.toml``'s defaults) and 30 honest
party loops (threads of this process, each with its own TLS channel, long polls and
heartbeats) train an MLP on breast-cancer slices with the server's round loop. Three runs,
same job, same process:

1. **baseline**: the machine as it is;
2. **cpu hog**: two more processes spinning on the CPU for the whole run;
3. **flood**: one more *authenticated* party (``flooder``, registered, not in the job) whose
   own process (``bench/_flood.py``) keeps 64 long polls in flight in a tight loop; the rounds
   start once the server has refused its first call.

Reported per run: the median round time (round 1 excluded), how many honest parties were
dropped from any round (must be 0), and for the flood the calls refused to the flooder
(``RESOURCE_EXHAUSTED``) and the server's log lines naming it. The flood's ratio to the
baseline is the acceptance figure (target <= 1.5x).

    .venv/bin/python bench/deploy_load.py            # 30 parties, 20 rounds
    .venv/bin/python bench/deploy_load.py --quick    # 10 parties, 5 rounds
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from _parties import start_party_threads

from fedsilo.deploy.certs import init_ca, issue
from fedsilo.deploy.config import (
    RegisteredParty,
    ServerConfig,
    TlsConfig,
    token_sha256,
)
from fedsilo.deploy.grpc_transport import GrpcTransport
from fedsilo.deploy.server import Server
from fedsilo.runtime.coordinator import Coordinator, RoundRecord
from fedsilo.runtime.party import PartyAgent
from fedsilo.simulation import as_job, load_simulated_data

FLOODER = "flooder"
FLOOD_THREADS = 64


def job(parties: int, rounds: int):  # type: ignore[no-untyped-def]
    return as_job(
        {
            "name": "deploy-load",
            "seed": 0,
            "rounds": rounds,
            "data": {"dataset": "breast-cancer", "num_parties": parties, "test_fraction": 0},
            "model": {"name": "mlp", "hidden": [16]},
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.1},
            "selection": {"min_parties": parties, "timeout_s": 120, "max_round_retries": 0},
        }
    )


class Counter(logging.Handler):
    """Counts the server's log lines that name the flooder."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if f"'{FLOODER}'" in record.getMessage():
            self.lines += 1


@contextmanager
def beside(kind: str, root: Path, port: int, flooding: Callable[[], bool]) -> Iterator[None]:
    """Run the hog or the flooder in their own processes for the ``with`` block."""
    procs: list[subprocess.Popen[bytes]] = []
    if kind == "hog":
        spin = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"
        procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    elif kind == "flood":
        ca = str(root / "ca" / "ca.pem")
        args = [sys.executable, str(Path(__file__).with_name("_flood.py")), str(port), ca]
        procs = [subprocess.Popen([*args, str(FLOOD_THREADS)])]
        deadline = time.monotonic() + 300
        while not flooding() and time.monotonic() < deadline:  # its polls are in flight
            time.sleep(0.2)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def run(j, root: Path, kind: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    data = load_simulated_data(j)
    names = sorted(data.parties)
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        run_dir=root / "server",
        admin_token_sha256=token_sha256("admin"),
        tls=TlsConfig(cert=root / "server.pem", key=root / "server.key"),
        parties=[RegisteredParty(name=n, token_sha256=token_sha256(n)) for n in [*names, FLOODER]],
    )
    server = Server(cfg)
    server._grpc.start()  # no job runner: the benchmark drives the round loop itself
    counter = Counter()
    logging.getLogger("fedsilo.deploy").addHandler(counter)
    procs = start_party_threads(
        root, server.port, {name: PartyAgent(name, data.parties[name]) for name in names}
    )
    while len(set(server.board.online()) & set(names)) < len(names):
        time.sleep(0.1)
    records: list[RoundRecord] = []
    cpu0 = time.process_time()
    try:
        flooding = lambda: server.limiter.refused.get(FLOODER, 0) > 0  # noqa: E731
        with beside(kind, root, server.port, flooding):
            Coordinator(j, GrpcTransport(server.board, names), on_round=records.append).run()
    finally:
        for p in procs:
            p.stop()
        server._grpc.stop(0)
        logging.getLogger("fedsilo.deploy").removeHandler(counter)
    times = [r.duration_s for r in records[1:]] or [r.duration_s for r in records]
    return {
        "round_s": float(np.median(times)),
        "dropped": float(sum(len(r.failures) for r in records)),
        "rounds": float(len(records)),
        "refused": float(server.limiter.refused.get(FLOODER, 0)),
        "log_lines": float(counter.lines),
        "cpu_s": time.process_time() - cpu0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parties", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="10 parties, 5 rounds")
    args = parser.parse_args()
    if args.quick:
        args.parties, args.rounds = 10, 5
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("fedsilo.deploy.party_process").setLevel(logging.ERROR)  # shutdowns
    logging.getLogger("fedsilo.deploy.limits").setLevel(logging.WARNING)  # the refusals counted
    j = job(args.parties, args.rounds)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        init_ca(root / "ca")
        issue(root / "ca", root, "server", kind="server")
        for kind in ("baseline", "hog", "flood"):
            (root / "server").mkdir(exist_ok=True)
            results[kind] = r = run(j, root, kind)
            print(
                f"{kind:8s}: {int(r['rounds'])} rounds, median round {r['round_s']:.3f} s, "
                f"honest parties dropped {int(r['dropped'])}, flooder calls refused "
                f"{int(r['refused'])}, server log lines naming it {int(r['log_lines'])}",
                flush=True,
            )
    base = results["baseline"]["round_s"]
    print(
        f"parties: {args.parties}, rounds: {args.rounds} (round 1 excluded), load {os.getloadavg()[0]:.1f}"
    )
    print(f"cpu hog / baseline: {results['hog']['round_s'] / base:.2f}x")
    print(f"flood / baseline:   {results['flood']['round_s'] / base:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
    # The numbers are printed; do not wait on gRPC's threads of 90 stopped party loops (a
    # 30-party run was seen to hang at interpreter exit).
    sys.stdout.flush()
    os._exit(0)
