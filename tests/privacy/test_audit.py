"""The audit log's hash chain: intact logs verify, every kind of tampering names its line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.privacy.audit import GENESIS, AuditLog, entry_hash, verify
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.party import LocalData, PartyAgent

runner = CliRunner()


def _log(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "audit" / "clinic.jsonl"
    log = AuditLog(path, clock=iter(range(1000, 2000)).__next__)
    for i in range(n):
        dp = {"epsilon": 0.5 * (i + 1), "delta": 1e-5, "noise_multiplier": 1.1}
        log.append(
            {"party": "clinic", "job": "j", "round": i, "kind": "fit", "bytes": 100 + i, "dp": dp}
        )
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_intact_log_verifies_and_chains_from_genesis(tmp_path: Path) -> None:
    path = _log(tmp_path)
    result = verify(path)
    assert result.ok and result.entries == 5
    first = json.loads(_lines(path)[0])
    assert first["prev"] == GENESIS and first["hash"] == entry_hash(first)
    assert first["time"] == 1000
    out = runner.invoke(app, ["audit", "verify", str(path)])
    assert out.exit_code == 0 and "5 entries, chain intact" in out.output


def test_reopened_log_continues_the_chain(tmp_path: Path) -> None:
    path = _log(tmp_path, 2)
    AuditLog(path).append({"party": "clinic", "kind": "evaluate", "bytes": 1})
    assert verify(path).entries == 3


def test_editing_one_field_breaks_that_line(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    lines[2] = lines[2].replace('"epsilon":1.5', '"epsilon":0.1')
    _write(path, lines)
    result = verify(path)
    assert (result.broken_line, result.reason) == (3, "'hash' does not match the entry's content")
    out = runner.invoke(app, ["audit", "verify", str(path)])
    assert out.exit_code == 2 and "line 3" in out.output


def test_flipping_one_byte_breaks_that_line(tmp_path: Path) -> None:
    path = _log(tmp_path)
    raw = bytearray(path.read_bytes())
    second_line = raw.index(b"\n") + 1
    pos = raw.index(b'"bytes":101', second_line) + len('"bytes":10')
    raw[pos] = ord("7")
    path.write_bytes(bytes(raw))
    assert verify(path).broken_line == 2


def test_rehashing_an_edited_line_breaks_the_next_link(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["bytes"] = 1
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry)
    _write(path, lines)
    result = verify(path)
    assert result.broken_line == 3 and "'prev'" in result.reason


def test_deleting_a_line_names_the_line_after_the_gap(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    del lines[1]
    _write(path, lines)
    result = verify(path)
    assert result.broken_line == 2 and "sequence number 2, expected 1" in result.reason


def test_reordering_lines_is_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    _write(path, lines)
    assert verify(path).broken_line == 4


def test_garbage_line_is_reported_not_raised(tmp_path: Path) -> None:
    path = _log(tmp_path)
    _write(path, [*_lines(path)[:2], "{not json", *_lines(path)[2:]])
    result = verify(path)
    assert result.broken_line == 3 and "not valid JSON" in result.reason


def test_missing_log_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    out = runner.invoke(app, ["audit", "verify", str(tmp_path / "nope.jsonl")])
    assert out.exit_code == 2 and "does not exist" in out.output


def test_party_logs_every_reply_it_sends(tmp_path: Path) -> None:
    from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard

    log = tmp_path / "p.jsonl"
    images = np.zeros((4, 1, 4, 4))
    data = LocalData("mem", images=images, labels=np.array([0, 1, 0, 1]), classes=("a", "b"))
    guard = PrivacyGuard("p", PartyPrivacy(audit_log=log))
    agent = PartyAgent("p", data, guard)
    replies = [agent.handle(Message(TaskKind.DESCRIBE, "j", 0, "coordinator", {}).encode())]
    replies.append(agent.handle(b"garbage"))
    entries = [json.loads(line) for line in _lines(log)]
    assert [e["kind"] for e in entries] == ["describe", "describe"]
    # each entry is the reply as the party computed it: what left, less the anchor it carries
    # (signed over the log with that entry in it)
    computed = [dataclasses.replace(Message.decode(r), anchor=None).encode() for r in replies]
    assert [e["bytes"] for e in entries] == [len(r) for r in computed]
    assert [e["sha256"] for e in entries] == [hashlib.sha256(r).hexdigest() for r in computed]
    anchors = [Message.decode(r).anchor for r in replies]
    assert [a["entries"] for a in anchors if a is not None] == [1, 2]
    assert verify(log).ok


def test_show_summarizes_kinds_bytes_and_final_epsilon(tmp_path: Path) -> None:
    path = _log(tmp_path)
    out = runner.invoke(app, ["audit", "show", str(path)])
    assert out.exit_code == 0, out.output
    assert "fit" in out.output and "510" in out.output  # 100+101+...+104 bytes
    assert "epsilon spent: 2.5000" in out.output


@pytest.mark.parametrize("kind", ["show", "verify"])
def test_cli_on_tampered_log_fails(tmp_path: Path, kind: str) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    _write(path, lines[1:])
    out = runner.invoke(app, ["audit", kind, str(path)])
    assert out.exit_code == 2 and "line 1" in out.output
