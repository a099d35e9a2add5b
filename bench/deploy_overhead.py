"""Deployment overhead: wall time per round over loopback gRPC + TLS vs in-process.

Same job, same process: 10 parties, mlp on mnist-5k with hidden [1200] (~0.95 M parameters),
the same rounds. In-process: the simulation's transport, which runs the parties one after
another. gRPC: a real server with TLS on 127.0.0.1 and 10 party loops (threads of this
process, each with its own TLS channel and heartbeat) answering with the same agents.

What makes the comparison fair: both sides use one torch thread, and the gRPC party loops
take a shared lock around ``handle`` so their local training runs one party at a time, as
in-process. (Real parties train in parallel on their own machines, which a shared 2-core box
cannot stand in for; unserialized threads would measure CPU contention, not the transport.)
What differs is only the wire: encode, TLS, gRPC, long polls, heartbeats, reply checks. The
two runs alternate ``--repeats`` times and each reports the median round time, first round
excluded (warm-up).

Bytes: the payload bytes of rounds 2.. (fit tasks and replies, evaluate tasks carry the
model; evaluate replies carry metrics and are counted too) against 30 raw float32 copies of
the parameters per round.

    .venv/bin/python bench/deploy_overhead.py [--rounds 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
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
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import as_job, load_simulated_data


def job(rounds: int):  # type: ignore[no-untyped-def]
    return as_job(
        {
            "name": "deploy-bench",
            "seed": 0,
            "rounds": rounds,
            "data": {"dataset": "mnist-5k", "num_parties": 10, "test_fraction": 0},
            "model": {"name": "mlp", "hidden": [1200]},
            "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.05},
            "selection": {"min_parties": 10, "timeout_s": 600},
        }
    )


def agents(j):  # type: ignore[no-untyped-def]
    return {n: PartyAgent(n, d) for n, d in load_simulated_data(j).parties.items()}


class Serialized:
    """A party handler that trains one party at a time (a lock shared by all party loops)."""

    def __init__(self, agent: PartyAgent, lock: threading.Lock) -> None:
        self._agent = agent
        self._lock = lock

    def handle(self, data: bytes) -> bytes:
        with self._lock:
            return self._agent.handle(data)


def in_process(j) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    times: list[float] = []
    coord = Coordinator(
        j, InProcessTransport(agents(j)), on_round=lambda r: times.append(r.duration_s)
    )
    outcome = coord.run()
    return float(np.median(times[1:] or times)), [float(v.size) for v in outcome.params.values()]


def over_grpc(j, root: Path) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    init_ca(root / "ca")
    issue(root / "ca", root, "server", kind="server")
    names = [f"party-{i + 1}" for i in range(10)]
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        run_dir=root / "server",
        admin_token_sha256=token_sha256("admin"),
        tls=TlsConfig(cert=root / "server.pem", key=root / "server.key"),
        parties=[RegisteredParty(name=n, token_sha256=token_sha256(n)) for n in names],
        poll_s=0.5,
    )
    server = Server(cfg)
    server._grpc.start()  # no job runner: the benchmark drives the coordinator itself
    lock = threading.Lock()
    procs = start_party_threads(
        root, server.port, {name: Serialized(agent, lock) for name, agent in agents(j).items()}
    )
    while len(server.board.online()) < 10:
        time.sleep(0.1)
    times: list[float] = []
    traffic = server.board.traffic
    marks: list[int] = []

    def on_round(r) -> None:  # type: ignore[no-untyped-def]
        times.append(r.duration_s)
        marks.append(traffic.sent + traffic.received)

    Coordinator(j, GrpcTransport(server.board), on_round=on_round).run()
    for p in procs:
        p.stop()
    server._grpc.stop(0)
    round_bytes = (marks[-1] - marks[0]) // max(1, len(marks) - 1)  # rounds 2..
    return float(np.median(times[1:] or times)), round_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("fedsilo.deploy").setLevel(logging.ERROR)  # reconnects at shutdown
    j = job(args.rounds)
    local: list[float] = []
    remote: list[float] = []
    for rep in range(args.repeats):  # alternate, so a load spike hits both sides alike
        t_local, sizes = in_process(j)
        with tempfile.TemporaryDirectory() as tmp:
            t_grpc, round_bytes = over_grpc(j, Path(tmp))
        local.append(t_local)
        remote.append(t_grpc)
        print(
            f"repeat {rep + 1}: in-process {t_local:.3f} s/round, gRPC+TLS {t_grpc:.3f} s/round "
            f"({t_grpc / t_local:.2f}x)"
        )
    raw = int(sum(sizes)) * 4
    t_local, t_grpc = float(np.median(local)), float(np.median(remote))
    print(f"parties: 10, rounds: {args.rounds} (round 1 excluded), torch threads: 1")
    print(f"parameters: {int(sum(sizes)):,} ({raw:,} bytes as float32)")
    print(
        f"in-process: {t_local:.3f} s/round; gRPC+TLS: {t_grpc:.3f} s/round; "
        f"overhead {t_grpc / t_local:.2f}x (target <= 1.5x)"
    )
    ratio = round_bytes / (30 * raw)
    print(
        f"bytes per round: {round_bytes:,} vs 30 raw float32 copies {30 * raw:,}: "
        f"{ratio:.4f}x (target <= 1.1x)"
    )


if __name__ == "__main__":
    main()
