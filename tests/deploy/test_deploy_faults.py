"""Faults over real gRPC: a party SIGKILLed mid-job, and a party that sends bad updates."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from fedsilo.deploy.config import load_party_config
from fedsilo.deploy.party_process import PartyProcess, load_agent
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Handler
from tests.deploy.harness import deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow

GOOD = ("org-a", "org-b", "org-c")
BAD = "org-x"
OVERSIZED_BYTES = 200 * 1024 * 1024


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


class BadParty:
    """A real agent whose fit replies go wrong in a different way every round.

    Round 1 malformed bytes, 2 NaN, 3 wrong shape (and it SIGKILLs org-c first: a crash
    mid-job), 4 oversized (by 200 MB: the server's peak memory is read before and after),
    5 claims to be another party, 6 honest.
    """

    def __init__(self, agent: Handler, victim_pid: int, server_pid: int) -> None:
        self._agent = agent
        self._victim = victim_pid
        self._server = server_pid
        self.peak_before_kb = 0

    def handle(self, data: bytes) -> bytes:
        reply = self._agent.handle(data)
        task = Message.decode(data)
        if task.kind is not TaskKind.FIT:
            return reply
        msg = Message.decode(reply)
        first = next(iter(msg.arrays))
        arrays = dict(msg.arrays)
        if task.round == 1:
            return b"\x00not a safetensors message" * 10
        if task.round == 2:
            arrays[first] = np.full_like(arrays[first], np.nan)
        elif task.round == 3:
            os.kill(self._victim, signal.SIGKILL)
            arrays[first] = arrays[first][:-1]
        elif task.round == 4:
            arrays["padding"] = np.zeros(OVERSIZED_BYTES // 4, dtype=np.float32)
            self.peak_before_kb = peak_rss_kb(self._server)
        elif task.round == 5:
            return Message(msg.kind, msg.job_id, msg.round, "org-a", msg.body, arrays).encode()
        return Message(msg.kind, msg.job_id, msg.round, msg.sender, msg.body, arrays).encode()


def test_killed_party_and_bad_updates_do_not_stop_the_job(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path, (*GOOD, BAD))
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_toml(csvs, rounds=6, min_parties=2, timeout_s=30))

    with deployment(tmp_path, parties=(*GOOD, BAD)) as dep:
        dep.make_pki()
        dep.write_server()
        for p in (*GOOD, BAD):
            dep.write_party(p, csvs[p])
        server = dep.start_server()
        procs = {p: dep.start_party(p) for p in GOOD}
        cfg = load_party_config(tmp_path / f"{BAD}.toml")
        forger = BadParty(load_agent(cfg), procs["org-c"].pid, server.pid)
        bad = PartyProcess(cfg, forger)
        thread = threading.Thread(target=bad.run, daemon=True)
        thread.start()
        try:
            dep.wait_status(lambda s: sum(p.online for p in s.parties) == 4)
            job_id = dep.submit(job_file.read_text())
            status = dep.wait_status(job_done(job_id), timeout_s=120)
            peak_after_kb = peak_rss_kb(server.pid)
        finally:
            bad.stop()
            thread.join(10)
        server_log = dep.log("server")

    assert procs["org-c"].returncode == -signal.SIGKILL
    run_dir = Path(next(j.run_dir for j in status.jobs if j.job_id == job_id))
    rounds = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert len(rounds) == 6
    why = {r["round"]: r["failures"].get(BAD, "") for r in rounds}
    assert "malformed" in why[1]
    assert "NaN" in why[2]
    assert "shape" in why[3]
    assert "exceeds" in why[4] and "limit" in why[4]
    # refused as it streamed in: the server's peak memory did not grow by the reply's size
    assert forger.peak_before_kb > 0
    assert (peak_after_kb - forger.peak_before_kb) * 1024 < OVERSIZED_BYTES / 4
    assert "claims to be from 'org-a'" in why[5]
    assert rounds[5]["participants"] == ["org-a", "org-b", BAD]
    for r in rounds[:2]:
        assert "org-c" in r["participants"]
    assert "org-c" in rounds[2]["failures"]  # killed during round 3: dropped, not waited for
    for r in rounds[3:]:  # and no longer among the parties online
        assert "org-c" not in r["participants"]
    assert "org-x" in server_log and "rejected" in server_log
