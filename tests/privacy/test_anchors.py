"""Anchored audit logs: truncation, re-chaining and deletion are reported; spend never moves.

The issue measured a party's recorded spend 3.00 -> 2.76 after cutting the log's tail, 0.79
after re-chaining it and 0 after deleting it, none of them reported. Here a party (the real
guard) trains record-DP rounds and seals every reply: the reply carries its signed anchor, the
coordinator keeps it in its job store, the party keeps its own in its ledger. Each attack then
edits the log file as someone with the party's disk could.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.errors import AuditError
from fedsilo.privacy.audit import Anchor, entry_hash, summarize, verify
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.ledger import Budget
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.anchors import AnchorKeeper
from fedsilo.runtime.store import JobStore
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.training import LocalTrainConfig

runner = CliRunner()
CFG = LocalTrainConfig(batch_size=16)
PROPOSAL = {
    "noise_multiplier": 1.0,
    "target_epsilon": None,
    "max_grad_norm": 1.0,
    "accounting": "rdp",
    "delta": 1e-5,
    "rounds": 12,
    "batch_size": 16,
    "epochs": 1,
}
BUDGET = Budget(None, 1e-5)


class Party:
    """The party side of a record-DP job: fit replies through its guard's seal."""

    def __init__(self, root: Path) -> None:
        self.log, self.ledger = root / "clinic.jsonl", root / "clinic.sqlite"
        self.guard = PrivacyGuard("clinic", PartyPrivacy(audit_log=self.log, ledger=self.ledger))
        self.guard.configure(PROPOSAL, rows=120, job="j")

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        self.guard.before_fit(task.round, CFG)
        body = {"num_examples": 120, "train_loss": 0.5, "privacy": self.guard.after_fit(CFG)}
        return self.guard.seal(Message(TaskKind.FIT, "j", task.round, "clinic", body).encode())


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Party, Path, float]:
    """12 sealed rounds; the coordinator kept the anchors in its job store."""
    party = Party(tmp_path)
    store = JobStore(tmp_path / "state.sqlite")
    keeper = AnchorKeeper(InProcessTransport({"clinic": party}), store, "j")
    for rnd in range(1, 13):
        task = Message(TaskKind.FIT, "j", rnd, "coordinator")
        assert keeper.exchange({"clinic": task}, timeout_s=600).replies["clinic"].anchor
    store.close()
    spent = party.guard.ledger.spent(BUDGET)
    assert spent > 0 and len(party.guard.ledger.entries()) == 12
    return party, tmp_path / "state.sqlite", spent


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _rechain(lines: list[str]) -> list[str]:
    """What an attacker with the file does: drop entries, then rebuild a consistent chain."""
    out, prev = [], "0" * 64
    for seq, line in enumerate(lines):
        entry = json.loads(line)
        entry.update(seq=seq, prev=prev)
        entry["hash"] = prev = entry_hash(entry)
        out.append(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    return out


def _verify(log: Path, *extra: str) -> Any:
    return runner.invoke(app, ["audit", "verify", str(log), *extra])


def _reopen(party: Party) -> PrivacyGuard:
    return PrivacyGuard("clinic", PartyPrivacy(audit_log=party.log, ledger=party.ledger))


def test_an_untouched_log_agrees_with_every_anchor(trained: tuple[Party, Path, float]) -> None:
    party, store, _ = trained
    for anchors in (store, party.ledger):
        out = _verify(party.log, "--anchors", str(anchors))
        assert out.exit_code == 0, out.output
        assert "12 entries, chain intact" in out.output and "signed anchors agree" in out.output
    # a reply's anchor covers its own entry: the coordinator's copy covers the whole log too
    for anchors in (store, party.ledger):
        assert "12 signed anchors agree, the latest covering 12 of 12" in (
            _verify(party.log, "--anchors", str(anchors)).output
        )
    _reopen(party)  # the party restarts on its own log


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_cutting_the_tail_is_reported_and_spend_does_not_move(
    trained: tuple[Party, Path, float], cut: int
) -> None:
    party, store, spent = trained
    log_spend = summarize(party.log)["epsilon"]
    party.log.write_text("".join(line + "\n" for line in _lines(party.log)[:-cut]))
    assert summarize(party.log)["epsilon"] < log_spend  # what the issue saw: the log's figure
    assert _verify(party.log).exit_code == 0  # the chain alone cannot tell
    # counted against the newest anchor, not the first one past the end (which always said 1)
    for anchors, newest in ((store, 12), (party.ledger, 12)):
        out = _verify(party.log, "--anchors", str(anchors))
        missing = newest - (12 - cut)
        assert out.exit_code == 2, out.output
        assert re.search(
            rf"at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC for {newest} entries, head [0-9a-f]{{16}}\.\.\.: "
            rf"{missing} entries were cut off the end",
            out.output,
        ), out.output
    with pytest.raises(AuditError, match=f": {cut} entries were cut off the end"):
        _reopen(party)  # the party refuses to go on with a shortened log
    assert party.guard.ledger.spent(BUDGET) == spent  # the ledger is not the log


def test_rechaining_the_log_is_reported_and_spend_does_not_move(
    trained: tuple[Party, Path, float],
) -> None:
    party, store, spent = trained
    log_spend = summarize(party.log)["epsilon"]
    edited = []
    for line in _lines(party.log):  # the same number of lines, each round's spend cut
        entry = json.loads(line)
        entry["dp"]["epsilon"] = entry["dp"]["epsilon"] / 4
        edited.append(json.dumps(entry))
    party.log.write_text("".join(line + "\n" for line in _rechain(edited)))
    assert verify(party.log).ok  # a consistent chain again
    assert summarize(party.log)["epsilon"] == pytest.approx(log_spend / 4)
    for anchors in (store, party.ledger):
        out = _verify(party.log, "--anchors", str(anchors))
        assert out.exit_code == 2 and "re-chained" in out.output, out.output
    with pytest.raises(AuditError, match="re-chained"):
        _reopen(party)
    assert party.guard.ledger.spent(BUDGET) == spent


def test_deleting_the_log_is_reported_and_spend_does_not_move(
    trained: tuple[Party, Path, float],
) -> None:
    party, store, spent = trained
    party.log.unlink()
    for anchors in (store, party.ledger):
        out = _verify(party.log, "--anchors", str(anchors), "--party", "clinic")
        assert out.exit_code == 2 and "deleted" in out.output, out.output
    with pytest.raises(AuditError, match="deleted"):
        _reopen(party)
    assert party.guard.ledger.spent(BUDGET) == spent


def test_a_missing_log_is_named_as_missing_not_as_broken_at_a_line(
    trained: tuple[Party, Path, float], tmp_path: Path
) -> None:
    party, store, spent = trained
    party.log.unlink()
    for extra in (["--party", "clinic"], []):  # no --party: the party is the file's name
        out = _verify(party.log, "--anchors", str(store), *extra)
        assert out.exit_code == 2, out.output
        text = " ".join(out.output.split())
        assert f"AuditError: audit log {party.log} does not exist, but the anchor" in text
        assert "for 12 entries" in text and "deleted or moved" in text
        assert "line 0" not in text and "broken" not in text and "entries verify" not in text
    elsewhere = tmp_path / "moved" / "log.jsonl"  # a name that is no party's: no anchors
    out = _verify(elsewhere, "--anchors", str(store))
    assert out.exit_code == 2 and "holds no anchors" not in out.output, out.output
    assert f"audit log {elsewhere} does not exist" in " ".join(out.output.split())
    with pytest.raises(AuditError) as err:
        _reopen(party)
    text = str(err.value)
    assert text.startswith(f"party 'clinic': audit log {party.log} does not exist, but the anchor")
    assert "line 0" not in text and "tampered" not in text and "where it was moved" in text
    assert party.guard.ledger.spent(BUDGET) == spent


def test_dropping_lines_and_rechaining_is_reported(trained: tuple[Party, Path, float]) -> None:
    party, store, spent = trained
    kept = [line for i, line in enumerate(_lines(party.log)) if i % 3 != 1]  # drop a third
    party.log.write_text("".join(line + "\n" for line in _rechain(kept)))
    assert verify(party.log).ok
    for anchors in (store, party.ledger):
        out = _verify(party.log, "--anchors", str(anchors))
        assert out.exit_code == 2 and "re-chained" in out.output, out.output
    with pytest.raises(AuditError, match="re-chained"):
        _reopen(party)
    assert party.guard.ledger.spent(BUDGET) == spent


def test_a_forged_anchor_is_neither_kept_nor_believed(
    trained: tuple[Party, Path, float], tmp_path: Path
) -> None:
    party, store, _ = trained
    good = Anchor.from_json(JobStore(store).anchors("clinic")[-1])
    forged = {**good.to_json(), "entries": good.entries - 2, "head": good.head}
    lines = tmp_path / "forged.jsonl"
    lines.write_text(json.dumps(forged) + "\n")
    out = _verify(party.log, "--anchors", str(lines))
    assert out.exit_code == 2 and "invalid signature" in out.output
    # the coordinator does not store it either
    keeper_store = JobStore(tmp_path / "other.sqlite")
    keeper = AnchorKeeper(InProcessTransport({}), keeper_store, "j")
    keeper.keep("clinic", Message(TaskKind.FIT, "j", 1, "clinic", anchor=forged))
    assert keeper_store.anchors() == []
    # nor an anchor that names another party
    keeper.keep("mallory", Message(TaskKind.FIT, "j", 1, "mallory", anchor=good.to_json()))
    assert keeper_store.anchors() == []
    out = _verify(party.log, "--anchors", str(store), "--key", "00" * 32)
    assert out.exit_code == 2 and "is not signed by the key" in out.output
