"""The in-process party loops of the deployment benchmarks (bench/deploy_overhead.py,
bench/deploy_load.py): one real :class:`~fedsilo.deploy.party_process.PartyProcess` per
party, each on a daemon thread, polling a server on 127.0.0.1 over TLS."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from fedsilo.deploy.config import PartyProcessConfig
from fedsilo.deploy.party_process import PartyProcess
from fedsilo.runtime.transport import Handler


def start_party_threads(
    root: Path, port: int, handlers: Mapping[str, Handler]
) -> list[PartyProcess]:
    """Start a party loop per ``handlers`` entry (token = its name, CA under ``root/ca``)."""
    procs = []
    for name, handler in handlers.items():
        pcfg = PartyProcessConfig(
            name=name,
            server=f"127.0.0.1:{port}",
            data=root / "unused.csv",
            token=name,
            ca=root / "ca" / "ca.pem",
            server_name="localhost",
        )
        proc = PartyProcess(pcfg, handler)
        threading.Thread(target=proc.run, daemon=True).start()
        procs.append(proc)
    return procs
