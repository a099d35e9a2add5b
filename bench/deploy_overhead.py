"""Deployment overhead: wall time per round over loopback gRPC + TLS vs in-process.

Same job, same process: 10 parties, mlp on mnist-5k with hidden [1200] (~0.95 M parameters).
In-process: the simulation's transport. gRPC: a real server with TLS on 127.0.0.1 and 10 party
loops (threads of this process, each with its own TLS channel) answering with the same
agents. Also payload bytes per parameter-carrying message vs the raw float32 parameter size.

    .venv/bin/python bench/deploy_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fedsilo.deploy.certs import init_ca, issue
from fedsilo.deploy.config import (
    PartyProcessConfig,
    RegisteredParty,
    ServerConfig,
    TlsConfig,
    token_sha256,
)
from fedsilo.deploy.grpc_transport import GrpcTransport
from fedsilo.deploy.party_process import PartyProcess
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


def in_process(j) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    times: list[float] = []
    coord = Coordinator(
        j, InProcessTransport(agents(j)), on_round=lambda r: times.append(r.duration_s)
    )
    outcome = coord.run()
    return float(np.mean(times[1:] or times)), [float(v.size) for v in outcome.params.values()]


def over_grpc(j, root: Path) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
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
    procs = []
    for name, agent in agents(j).items():
        pcfg = PartyProcessConfig(
            name=name,
            server=f"127.0.0.1:{server.port}",
            data=root / "unused.csv",
            token=name,
            ca=root / "ca" / "ca.pem",
            server_name="localhost",
        )
        proc = PartyProcess(pcfg, agent)
        threading.Thread(target=proc.run, daemon=True).start()
        procs.append(proc)
    while len(server.board.online()) < 10:
        time.sleep(0.1)
    times: list[float] = []
    coord = Coordinator(
        j, GrpcTransport(server.board), on_round=lambda r: times.append(r.duration_s)
    )
    before = (server.board.traffic.sent, server.board.traffic.received)
    coord.run()
    sent = server.board.traffic.sent - before[0]
    received = server.board.traffic.received - before[1]
    for p in procs:
        p.stop()
    server._grpc.stop(0)
    return float(np.mean(times[1:] or times)), sent, received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    j = job(args.rounds)
    t_local, sizes = in_process(j)
    raw = int(sum(sizes)) * 4
    with tempfile.TemporaryDirectory() as tmp:
        t_grpc, sent, received = over_grpc(j, Path(tmp))
    # per round: 10 fit tasks + 10 fit replies + 10 evaluate tasks carry the parameters
    messages = args.rounds * 30
    per_message = (sent + received) / messages
    print(f"parameters: {int(sum(sizes)):,} ({raw:,} bytes as float32)")
    print(
        f"in-process: {t_local:.3f} s/round; gRPC+TLS: {t_grpc:.3f} s/round; "
        f"overhead {t_grpc / t_local:.2f}x (target <= 1.5x)"
    )
    print(
        f"bytes per parameter message: {per_message:,.0f}; ratio to raw "
        f"{per_message / raw:.4f}x (target <= 1.1x; setup messages included)"
    )


if __name__ == "__main__":
    main()
