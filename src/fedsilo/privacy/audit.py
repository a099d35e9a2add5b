"""A party's append-only audit log of everything it sent, as a SHA-256 hash chain.

One JSON object per line. Each entry holds what left the party (time, job, round, message
kind, bytes, the SHA-256 of the message, and for DP rounds the clip norm, noise multiplier,
this round's spend and the epsilon spent so far), plus ``prev``: the hash of the entry before
it (64 zeros for the first), and ``hash``: the SHA-256 of the canonical JSON (sorted keys, no
spaces) of the entry without its ``hash``. Editing any field, deleting or reordering lines
breaks the chain at the first line touched; :func:`verify` names it.

Threat model: the chain makes after-the-fact edits *evident* to anyone holding the log (an
auditor, the party's DPO); it does not stop someone who can rewrite the whole file from
rebuilding a consistent chain, and cutting lines off the end is only visible against a copy
of the last hash kept elsewhere (``fedsilo audit show`` prints it). The log doubles as the
party's privacy ledger: a restarted party re-reads its spend from it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.errors import AuditError, ErrorCode

GENESIS = "0" * 64


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no whitespace, no NaN."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class Verification:
    """Outcome of :func:`verify`: ok, or the first broken line (1-based) and why."""

    entries: int
    broken_line: int | None = None
    reason: str = ""
    last_hash: str = GENESIS

    @property
    def ok(self) -> bool:
        return self.broken_line is None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                yield number, line.rstrip("\n")
    except FileNotFoundError:
        raise AuditError(f"audit log {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"audit log {path} cannot be read: {exc}") from None


def verify(path: str | Path) -> Verification:
    """Check every line's hash and link to the line before; stop at the first break."""
    path = Path(path)
    prev, count = GENESIS, 0
    for number, line in _lines(path):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            return Verification(count, number, f"not valid JSON ({exc.msg})", prev)
        if not isinstance(entry, dict):
            return Verification(count, number, "not a JSON object", prev)
        if entry.get("seq") != count:
            return Verification(
                count, number, f"sequence number {entry.get('seq')!r}, expected {count}", prev
            )
        if entry.get("prev") != prev:
            return Verification(
                count, number, "'prev' does not match the hash of the line before", prev
            )
        try:
            recomputed = entry_hash(entry)
        except (TypeError, ValueError) as exc:
            return Verification(count, number, f"entry cannot be hashed: {exc}", prev)
        if entry.get("hash") != recomputed:
            return Verification(count, number, "'hash' does not match the entry's content", prev)
        prev, count = recomputed, count + 1
    return Verification(count, None, "", prev)


def read_entries(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a log whose chain verifies; :class:`AuditError` naming the line if not."""
    path = Path(path)
    result = verify(path)
    if not result.ok:
        raise AuditError(
            f"audit log {path} is broken at line {result.broken_line}: {result.reason}. "
            "Restore it from a backup; the party will not start on a tampered log"
        )
    return [json.loads(line) for _, line in _lines(path) if line]


@dataclass
class AuditLog:
    """Appends hash-chained entries to ``path`` (created with its folder on first write)."""

    path: Path
    clock: Callable[[], float] = time.time
    _prev: str = field(default=GENESIS, init=False)
    _seq: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.path.exists():
            entries = read_entries(self.path)
            self._seq = len(entries)
            self._prev = entries[-1]["hash"] if entries else GENESIS

    def entries(self) -> list[dict[str, Any]]:
        return read_entries(self.path) if self.path.exists() else []

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        entry = {**record, "seq": self._seq, "time": self.clock(), "prev": self._prev}
        entry["hash"] = entry_hash(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(canonical(entry).decode() + "\n")
            fh.flush()
        self._prev, self._seq = entry["hash"], self._seq + 1
        return entry


def summarize(path: str | Path) -> dict[str, Any]:
    """Rows and bytes per message kind, jobs, rounds and the final epsilon of a verified log."""
    entries = read_entries(path)
    kinds: dict[str, dict[str, int]] = {}
    epsilon: float | None = None
    delta: float | None = None
    refused = 0
    for e in entries:
        k = kinds.setdefault(str(e.get("kind")), {"rows": 0, "bytes": 0})
        k["rows"] += 1
        k["bytes"] += int(e.get("bytes", 0))
        dp = e.get("dp") or {}
        if "epsilon" in dp:
            epsilon, delta = float(dp["epsilon"]), dp.get("delta")
        if e.get("error_code") == ErrorCode.BUDGET_EXHAUSTED.value:
            refused += 1
    return {
        "entries": len(entries),
        "party": entries[0].get("party") if entries else None,
        "jobs": sorted({str(e.get("job")) for e in entries}),
        "kinds": kinds,
        "bytes": sum(k["bytes"] for k in kinds.values()),
        "epsilon": epsilon,
        "delta": delta,
        "refused_rounds": refused,
        "last_hash": entries[-1]["hash"] if entries else GENESIS,
    }
