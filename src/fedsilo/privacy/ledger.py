"""One privacy ledger per party: every noisy release it agreed to, in one SQLite file.

A party's training rounds with record-level DP (Poisson-sampled Gaussian, self-composed over
the round's steps) and its analytics answers (Gaussian or Laplace) are *events* in one ledger,
whatever job they belong to. The party's spend is the composition of all its events by
``dp_accounting`` (:func:`fedsilo.privacy.accounting.epsilon`) at the party's own delta, and
its budget is checked against that total, never against a per-job or per-coordinator count:
renaming a job, or a coordinator forgetting its own records, starts nothing afresh.

:meth:`PrivacyLedger.charge` is check-and-charge in **one** SQLite transaction
(``BEGIN IMMEDIATE``: the write lock is taken before the events are read), so concurrent
releases, from threads or from processes sharing the file, are serialized and can never
together exceed the budget, and none is lost. A release is charged *before* it leaves the
party; a refused release is not recorded.

The ledger is not the audit log: editing, truncating or deleting the log changes nothing
here. The file also keeps the signed anchors of the party's audit-log head
(:mod:`fedsilo.privacy.audit`), the party's own copy of what its coordinator stores.

Tables: ``meta`` (the owning party's name and identity key), ``events`` (time, source,
job, round, what, the event as JSON, the total after it) and ``anchors``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsilo.errors import BudgetExhaustedError, ConfigError, LedgerError
from fedsilo.privacy.accounting import (
    AccountingMethod,
    GaussianSpend,
    LaplaceSpend,
    epsilon,
    over_budget,
)

LAYOUT_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    party    TEXT NOT NULL,
    time     REAL NOT NULL,
    source   TEXT NOT NULL CHECK (source IN ('training', 'query')),
    job      TEXT NOT NULL,
    round    INTEGER NOT NULL,
    what     TEXT NOT NULL,
    event    TEXT NOT NULL,
    epsilon_after REAL NOT NULL
);
CREATE TABLE anchors (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    entries INTEGER NOT NULL,
    anchor  TEXT NOT NULL
);
"""


Event = GaussianSpend | LaplaceSpend  # what a party releases: DP-SGD rounds, query answers


@dataclass(frozen=True)
class Budget:
    """The party's own limit: at most ``max_epsilon`` (None: unlimited) at ``delta``."""

    max_epsilon: float | None
    delta: float
    method: AccountingMethod = AccountingMethod.RDP


@dataclass(frozen=True)
class Charged:
    """A release recorded in the ledger: the party's total after it."""

    after: float


@dataclass(frozen=True)
class LedgerEntry:
    time: float
    source: str
    job: str
    round: int
    what: str
    spend: Event
    epsilon_after: float


def spend_to_json(spend: Event) -> dict[str, Any]:
    if isinstance(spend, LaplaceSpend):
        return {"mechanism": "laplace", "epsilon": spend.epsilon, "steps": spend.steps}
    return {
        "mechanism": "gaussian",
        "noise_multiplier": spend.noise_multiplier,
        "sample_rate": spend.sample_rate,
        "steps": spend.steps,
    }


def spend_from_json(raw: Any) -> Event:
    """The event stored by :func:`spend_to_json`; ValueError if it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("an event is a JSON object")
    try:
        if raw.get("mechanism") == "laplace":
            return LaplaceSpend(float(raw["epsilon"]), int(raw["steps"]))
        if raw.get("mechanism") == "gaussian":
            return GaussianSpend(
                float(raw["noise_multiplier"]), float(raw["sample_rate"]), int(raw["steps"])
            )
    except (KeyError, TypeError, ConfigError) as exc:
        raise ValueError(f"malformed event {raw!r}: {exc}") from None
    raise ValueError(f"unknown mechanism {raw.get('mechanism')!r}")


class PrivacyLedger:
    """A party's ledger in ``path`` (a new file is created), or in memory when ``path`` is None.

    One connection behind a lock serves the threads of one process; ``BEGIN IMMEDIATE``
    serializes processes (and other :class:`PrivacyLedger` objects) sharing the file.
    """

    def __init__(
        self,
        path: Path | None,
        party: str,
        *,
        identity: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.party = party
        self._clock = clock
        self._lock = threading.RLock()
        where = ":memory:" if path is None else str(path)
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                where, timeout=60.0, check_same_thread=False, isolation_level=None
            )
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                self._create_or_check(identity)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"privacy ledger {where} of party '{party}' cannot be opened: {exc}"
            ) from None

    # -- storage --------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _create_or_check(self, identity: str | None) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise LedgerError(f"{self.path} is an SQLite file but not a fedsilo privacy ledger")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT INTO meta VALUES ('party', ?)", (self.party,))
            self._db.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
        elif version != LAYOUT_VERSION:
            raise LedgerError(
                f"privacy ledger {self.path} has layout version {version}; this fedsilo reads "
                f"version {LAYOUT_VERSION}"
            )
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("party") != self.party:
            raise LedgerError(
                f"privacy ledger {self.path} belongs to party '{meta.get('party')}', not "
                f"'{self.party}'; give each party its own ledger file"
            )
        if identity is not None:
            known = meta.get("identity")
            if known is None:
                self._db.execute("INSERT INTO meta VALUES ('identity', ?)", (identity,))
            elif known != identity:
                raise LedgerError(
                    f"privacy ledger {self.path} of party '{self.party}' was kept under identity "
                    f"key {known[:16]}..., not {identity[:16]}...: use the party's own identity "
                    "key file (a new key does not start a new budget)"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading --------------------------------------------------------------------------
    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, source, job, round, what, event, epsilon_after FROM events "
                "WHERE party = ? ORDER BY id",
                (self.party,),
            ).fetchall()
        return [self._entry(r) for r in rows]

    def _entry(self, row: tuple[Any, ...]) -> LedgerEntry:
        t, source, job, rnd, what, event, after = row
        try:
            spend = spend_from_json(json.loads(event))
        except ValueError as exc:
            raise LedgerError(
                f"privacy ledger {self.path} of party '{self.party}' has a corrupt event "
                f"({what}): {exc}"
            ) from None
        return LedgerEntry(
            float(t), str(source), str(job), int(rnd), str(what), spend, float(after)
        )

    def spends(self, *, job: str | None = None) -> list[Event]:
        """Every recorded event (or those of one job, for reporting that job's epsilon)."""
        return [e.spend for e in self.entries() if job is None or e.job == job]

    def _spends_locked(self) -> list[Event]:
        rows = self._db.execute(
            "SELECT event FROM events WHERE party = ? ORDER BY id", (self.party,)
        ).fetchall()
        out = []
        for (event,) in rows:
            try:
                out.append(spend_from_json(json.loads(event)))
            except ValueError as exc:
                raise LedgerError(
                    f"privacy ledger {self.path} of party '{self.party}' has a corrupt event: {exc}"
                ) from None
        return out

    def spent(self, budget: Budget) -> float:
        """The party's total epsilon over every event, at the budget's delta."""
        with self._lock:
            return epsilon(self._spends_locked(), budget.delta, budget.method)

    # -- charging -------------------------------------------------------------------------
    def charge(
        self,
        spend: Event,
        budget: Budget,
        *,
        source: str,
        job: str,
        round: int,
        what: str,
        refuse: Callable[[float, float], str],
    ) -> Charged:
        """Check ``spend`` against ``budget`` and record it, in one transaction.

        Raises :class:`BudgetExhaustedError` with ``refuse(before, after)`` (and records
        nothing) if the total after it would exceed the budget.
        """
        with self._transaction():
            spends = self._spends_locked()
            after = epsilon([*spends, spend], budget.delta, budget.method)
            if budget.max_epsilon is not None and over_budget(after, budget.max_epsilon):
                before = epsilon(spends, budget.delta, budget.method) if spends else 0.0
                raise BudgetExhaustedError(refuse(before, after))
            self._db.execute(
                "INSERT INTO events (party, time, source, job, round, what, event, epsilon_after)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.party,
                    self._clock(),
                    source,
                    job,
                    round,
                    what,
                    json.dumps(spend_to_json(spend), sort_keys=True),
                    after,
                ),
            )
        return Charged(after)

    def check(self, spend: Event, budget: Budget, refuse: Callable[[float, float], str]) -> None:
        """Raise as :meth:`charge` would, recording nothing (an early, advisory check)."""
        if budget.max_epsilon is None:
            return
        with self._lock:
            spends = self._spends_locked()
        after = epsilon([*spends, spend], budget.delta, budget.method)
        if over_budget(after, budget.max_epsilon):
            before = epsilon(spends, budget.delta, budget.method) if spends else 0.0
            raise BudgetExhaustedError(refuse(before, after))

    # -- anchors of the audit log ---------------------------------------------------------
    def save_anchor(self, entries: int, anchor: dict[str, Any]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO anchors (entries, anchor) VALUES (?, ?)",
                (entries, json.dumps(anchor, sort_keys=True)),
            )

    def anchors(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT anchor FROM anchors ORDER BY id").fetchall()
        return [json.loads(a) for (a,) in rows]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), under the lock."""

    def __init__(self, ledger: PrivacyLedger) -> None:
        self._ledger = ledger

    def __enter__(self) -> None:
        self._ledger._lock.acquire()
        try:
            self._ledger._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._ledger._lock.release()
            raise

    def __exit__(self, exc_type: object, *exc: object) -> None:
        db = self._ledger._db
        try:
            db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._ledger._lock.release()
