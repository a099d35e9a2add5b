"""Liveness over real gRPC: two of three parties die after round 1; the round is retried with
backoff and the job's error names every missing party with its reason for every attempt."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest

from fedsilo.deploy.config import PartyProcessConfig
from fedsilo.deploy.party_process import PartyProcess, load_agent
from fedsilo.deploy.server import Server
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Handler
from tests.deploy.harness import (
    PARTIES,
    job_toml,
    local_server_config,
    token,
    write_party_csvs,
)

DYING = ("org-b", "org-c")


class DiesAfterRound1:
    """An honest agent whose process stops (no more polls or heartbeats) after round 1."""

    def __init__(self, agent: Handler) -> None:
        self._agent = agent
        self.process: PartyProcess | None = None

    def handle(self, data: bytes) -> bytes:
        reply = self._agent.handle(data)
        task = Message.decode(data)
        if task.kind is TaskKind.EVALUATE and task.round == 1 and self.process is not None:
            self.process.stop()
        return reply


def test_two_of_three_parties_dead_fails_with_each_reason_after_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csvs = write_party_csvs(tmp_path)
    config = local_server_config(
        tmp_path,
        PARTIES,
        poll_s=0.5,
        liveness_s=3.0,
        retry_backoff_s=0.5,
    )
    server = Server(config, insecure=True)
    server.start()
    parties, threads = [], []
    for name in PARTIES:
        cfg = PartyProcessConfig(
            name=name, server=config.listen, token=token(name), data=csvs[name], heartbeat_s=0.5
        )
        agent = load_agent(cfg)
        handler = DiesAfterRound1(agent) if name in DYING else agent
        process = PartyProcess(cfg, handler, insecure=True)
        if isinstance(handler, DiesAfterRound1):
            handler.process = process
        parties.append(process)
        threads.append(threading.Thread(target=process.run, daemon=True))
    try:
        for t in threads:
            t.start()
        text = job_toml(csvs, rounds=3, min_parties=2, timeout_s=30).replace(
            "max_round_retries = 1", "max_round_retries = 2"
        )
        with caplog.at_level(logging.INFO):
            job_id = server.jobs.submit(text)
            for _ in range(600):
                job = next(j for j in server.jobs.status() if j.job_id == job_id)
                if job.status in ("done", "failed"):
                    break
                threading.Event().wait(0.2)
    finally:
        for p in parties:
            p.stop()
        server.stop(0)
        for t in threads:
            t.join(10)

    assert job.status == "failed", job
    error = job.error
    assert "round 2 failed after 3 attempt(s)" in error
    # the attempts' shared reason is said once
    assert "attempts 1-3: 1 valid update(s), 2 needed" in error
    reasons = _reasons(error)
    for number in (1, 2, 3):  # every attempt names both dead parties, each with its reason
        for dead in DYING:
            why = reasons[number, dead]
            assert re.match(r"(fit: lost: no poll|not connected)", why), error
    assert "round 2: retrying in 0.5 s" in caplog.text
    assert "round 2: retrying in 1 s" in caplog.text  # doubled


def _reasons(error: str) -> dict[tuple[int, str], str]:
    """(attempt, party) -> reason, read back from a failed round's message, whose entries
    name their parties and attempts (fedsilo.runtime.failures.round_failures)."""
    out = {}
    for entry in error.split("Failures: ", 1)[1].split(" | "):
        who, why = entry.split(": ", 1)
        for part in who.split("; "):
            m = re.fullmatch(r"(?:party '(.+)'|\d+ parties \((.+)\)) in attempts? (.+)", part)
            if m is None:  # an attempt's own failure: no party
                continue
            parties = [m[1]] if m[1] else [p.strip("'") for p in m[2].split(", ")]
            first, _, last = m[3].partition("-")
            numbers = range(int(first), int(last) + 1) if last else map(int, m[3].split(", "))
            for number in numbers:
                for party in parties:
                    out[number, party] = why
    return out
