"""A party's append-only audit log of everything it sent, as a SHA-256 hash chain.

One JSON object per line. Each entry holds what left the party (time, job, round, message
kind, bytes, the SHA-256 of the message, and for DP rounds the clip norm, noise multiplier,
this round's spend and the epsilon spent so far), plus ``prev``: the hash of the entry before
it (64 zeros for the first), and ``hash``: the SHA-256 of the canonical JSON (sorted keys, no
spaces) of the entry without its ``hash``. Editing any field, deleting or reordering lines
breaks the chain at the first line touched; :func:`verify` names it.

Threat model: the chain makes after-the-fact edits *evident* to anyone holding the log (an
auditor, the party's DPO). On its own it cannot show that lines were cut off the end, or that
someone rewrote the whole file as a new consistent chain, or deleted it. **Anchors** do: with
every reply the party sends an :class:`Anchor`, its Ed25519 signature (its identity key,
:mod:`fedsilo.privacy.secagg.identity`) over the number of entries and the hash of the last one; the
coordinator stores it in its job store and the party keeps its own copy in its privacy ledger.
:func:`verify` with anchors reports a log shorter than an anchor (truncated), a log whose entry
differs from an anchored head (re-chained), and a missing log (deleted).

The log is not the ledger: a party's privacy spend lives in its ledger
(:mod:`fedsilo.privacy.ledger`), so no edit to the log changes what the party has spent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedsilo.errors import AuditError, ErrorCode, ProtocolError
from fedsilo.privacy.secagg import keys

GENESIS = "0" * 64
ANCHOR_DOMAIN = b"fedsilo/audit-anchor\0"  # a signature over an anchor verifies for nothing else


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no whitespace, no NaN."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """A party's signed statement: "my audit log had ``entries`` lines, the last hashed ``head``"."""

    party: str
    entries: int
    head: str
    time: float
    key: str  # the signer's Ed25519 public key, hex
    signature: str  # hex

    def _payload(self) -> bytes:
        fields = {"party": self.party, "entries": self.entries, "head": self.head}
        return canonical(fields | {"time": self.time, "key": self.key})

    @classmethod
    def sign(
        cls, party: str, entries: int, head: str, signing_key: Ed25519PrivateKey, at: float
    ) -> Anchor:
        """The party's anchor, signed with its Ed25519 identity key."""
        public = keys.identity_public(signing_key).hex()
        unsigned = cls(party, entries, head, at, public, "")
        signature = keys.sign(signing_key, ANCHOR_DOMAIN + unsigned._payload())
        return cls(party, entries, head, at, public, signature.hex())

    def check_signature(self) -> None:
        """Return if the signature is ``key``'s over the rest; one opaque ProtocolError if not."""
        try:
            public = keys.identity_key(bytes.fromhex(self.key))
            signature = bytes.fromhex(self.signature)
        except ValueError:
            raise ProtocolError(f"the signature of '{self.party}' does not verify") from None
        keys.verify(public, signature, ANCHOR_DOMAIN + self._payload(), signer=self.party)

    def to_json(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "entries": self.entries,
            "head": self.head,
            "time": self.time,
            "key": self.key,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Anchor:
        """An anchor from its JSON form; :class:`AuditError` naming the field if malformed."""
        if not isinstance(raw, dict):
            raise AuditError("an anchor is a JSON object")
        try:
            anchor = cls(
                party=_typed(raw, "party", str),
                entries=_typed(raw, "entries", int),
                head=_typed(raw, "head", str),
                time=float(_typed(raw, "time", (int, float))),
                key=_typed(raw, "key", str),
                signature=_typed(raw, "signature", str),
            )
        except KeyError as exc:
            raise AuditError(f"an anchor lacks the field {exc}") from None
        if anchor.entries < 0 or len(anchor.head) != 64:
            raise AuditError(f"anchor of party '{anchor.party}' has an invalid head or count")
        return anchor

    def describe(self) -> str:
        return (
            f"the anchor signed by party '{self.party}' (key {self.key[:16]}...) at "
            f"{_when(self.time)} for {self.entries} entries, head {self.head[:16]}..."
        )


def _when(seconds: float) -> str:
    """A Unix time as people read it, in UTC; the number itself if no date can show it."""
    try:
        return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%d %H:%M} UTC"
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f}"


def _typed(raw: dict[str, Any], key: str, kind: Any) -> Any:
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AuditError(f"anchor field '{key}' has the wrong type ({type(value).__name__})")
    return value


@dataclass(frozen=True)
class Verification:
    """Outcome of :func:`verify`: ok, or the first broken line (1-based) and why.

    ``broken_line`` is 0 when the fault is at no line: a log that does not exist although an
    anchor vouches for it (``missing``), or an anchor that does not verify. ``anchored`` is the
    largest entry count a valid anchor vouched for (0 without anchors).
    """

    entries: int
    broken_line: int | None = None
    reason: str = ""
    last_hash: str = GENESIS
    anchored: int = 0
    missing: bool = False

    @property
    def ok(self) -> bool:
        return self.broken_line is None

    def problem(self, path: str | Path) -> str:
        """What is wrong with the log at ``path``, as a sentence naming it ("" if it verifies)."""
        if self.ok:
            return ""
        if self.missing:
            return f"audit log {path} does not exist, but {self.reason}"
        if self.broken_line:
            return f"audit log {path} is broken at line {self.broken_line}: {self.reason}"
        return f"audit log {path} does not verify against its signed anchors: {self.reason}"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                yield number, line.rstrip("\n")
    except FileNotFoundError:
        raise AuditError(f"audit log {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"audit log {path} cannot be read: {exc}") from None


def verify(
    path: str | Path, anchors: Sequence[Anchor] = (), *, key: str | None = None
) -> Verification:
    """Check every line's hash and link to the line before, then the log against ``anchors``.

    Stops at the first break. With anchors (each must carry a valid signature, by ``key`` if
    given), a missing log (``missing``), a log with fewer entries than an anchor vouches for,
    or an entry whose hash differs from an anchored head is reported as broken too. Without
    anchors a missing log raises :class:`AuditError` saying so.
    """
    path = Path(path)
    if anchors and not path.exists():
        top = max(anchors, key=lambda a: a.entries)
        return Verification(0, 0, f"{top.describe()}: it was deleted or moved", missing=True)
    prev, count = GENESIS, 0
    hashes: list[str] = []
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
        hashes.append(prev)
    return _check_anchors(count, prev, hashes, anchors, key)


def _check_anchors(
    count: int, last: str, hashes: list[str], anchors: Sequence[Anchor], key: str | None
) -> Verification:
    anchored = 0
    ordered = sorted(anchors, key=lambda a: a.entries)
    for i, anchor in enumerate(ordered):
        try:
            anchor.check_signature()
        except ProtocolError:
            return Verification(
                count, 0, f"{anchor.describe()} has an invalid signature", last, anchored
            )
        if key is not None and anchor.key != key:
            return Verification(
                count, 0, f"{anchor.describe()} is not signed by the key {key[:16]}...", last
            )
        if anchor.entries > count:
            # the first anchor past the end proves the cut; the newest valid one measures it
            newest = max(
                (a for a in ordered[i:] if _valid(a, key)), key=lambda a: (a.entries, a.time)
            )
            return Verification(
                count,
                count + 1,
                f"the log ends after {count} entries, but {newest.describe()}: "
                f"{newest.entries - count} entries were cut off the end",
                last,
                anchored,
            )
        head = hashes[anchor.entries - 1] if anchor.entries else GENESIS
        if head != anchor.head:
            return Verification(
                count,
                anchor.entries,
                f"entry {anchor.entries} hashes to {head[:16]}..., but {anchor.describe()}: "
                "the log was rewritten (re-chained) at or before this line",
                last,
                anchored,
            )
        anchored = anchor.entries
    return Verification(count, None, "", last, anchored)


def _valid(anchor: Anchor, key: str | None) -> bool:
    """Whether ``anchor``'s signature verifies (and is ``key``'s, if given)."""
    try:
        anchor.check_signature()
    except ProtocolError:
        return False
    return key is None or anchor.key == key


def load_anchors(path: str | Path, party: str | None = None) -> list[Anchor]:
    """Anchors kept in ``path``: a job store or a party ledger (SQLite, table ``anchors``), or a
    file of anchors as JSON lines; those of ``party`` only, if given."""
    path = Path(path)
    try:
        head = path.read_bytes()[:16]
    except OSError as exc:
        raise AuditError(f"anchors file {path} cannot be read: {exc.strerror}") from None
    raw: list[Any] = []
    if head == b"SQLite format 3\0":
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT anchor FROM anchors ORDER BY id").fetchall()
            finally:
                db.close()
            raw = [json.loads(a) for (a,) in rows]
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise AuditError(
                f"{path} holds no readable anchors ({exc}); give a job store (state.sqlite) "
                "or a party's privacy ledger"
            ) from None
    else:
        for number, line in _lines(path):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AuditError(f"{path} line {number}: not an anchor ({exc.msg})") from None
    anchors = [Anchor.from_json(a) for a in raw]
    return [a for a in anchors if party is None or a.party == party]


def read_entries(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a log whose chain verifies; :class:`AuditError` naming the line if not."""
    path = Path(path)
    result = verify(path)
    if not result.ok:
        raise AuditError(
            f"{result.problem(path)}. Restore it from a backup; the party will not start on a "
            "tampered log"
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

    @property
    def head(self) -> tuple[int, str]:
        """(entries written, hash of the last one): what an :class:`Anchor` signs."""
        return self._seq, self._prev

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


def log_party(path: str | Path) -> str:
    """The party a log belongs to: its first entry's ``party``, else the file name's stem."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
        if isinstance(first, dict) and isinstance(first.get("party"), str):
            return str(first["party"])
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return path.stem
