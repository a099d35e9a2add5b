"""Failure reasons for people: each distinct reason once, with the parties that gave it.

The parties of a round or a query often fail the same way (each refuses a setup below its
minimum, or each is unreachable), and each party's reason names the party itself. Listed per
party, and for a round per attempt, one sentence came back dozens of times (10 parties
refusing a SecAgg+ degree over 3 attempts: a 9 KB :class:`~fedsilo.errors.RoundFailedError`
holding the refusal 30 times). Here reasons that differ only in the party's own name
(``party 'x'``, written ``each party``) are said once, with the parties (and attempts) that
gave them; distinct reasons stay distinct.

>>> failure_detail({"b": "party 'b' refuses: no", "a": "party 'a' refuses: no"})
"parties 'a', 'b': each party refuses: no"
>>> round_failures([{ROUND: "too few", "a": "party 'a' is late"}, {ROUND: "too few"}])
"attempts 1-2: too few | party 'a' in attempt 1: party 'a' is late"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

ROUND = "(round)"  # an attempt's own failure (not one party's), keyed beside the parties


def natural(name: str) -> list[str | int]:
    """Sort key: names with numbers in numeric order (party-2 before party-10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _shared(failures: Mapping[str, str]) -> dict[str, list[str]]:
    """Each distinct reason (the party's own name written ``each party``) -> its parties."""
    shared: dict[str, list[str]] = {}
    for party in sorted(failures, key=natural):
        why = failures[party].replace(f"party '{party}'", "each party")
        shared.setdefault(why, []).append(party)
    return shared


def _quoted(parties: Sequence[str]) -> str:
    return ", ".join(f"'{p}'" for p in parties)


def named(parties: Sequence[str]) -> str:
    """The parties in a sentence: ``'a'``, ``'a' and 'b'``, ``'a', 'b' and 'c'``."""
    quoted = [f"'{p}'" for p in parties]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def failure_detail(failures: Mapping[str, str]) -> str:
    """The failed parties' reasons (party -> reason) for one error message, each distinct
    reason once: ``party 'a': <its reason>; parties 'b', 'c': each party refuses ...``."""
    return "; ".join(
        f"party '{parties[0]}': {failures[parties[0]]}"
        if len(parties) == 1
        else f"parties {_quoted(parties)}: {why}"
        for why, parties in _shared(failures).items()
    )


def _attempts(numbers: Sequence[int]) -> str:
    """1-based attempt numbers, ascending: ``attempt 2``, ``attempts 1-3``, ``attempts 1, 3``."""
    if len(numbers) == 1:
        return f"attempt {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"attempts {numbers[0]}-{numbers[-1]}"
    return f"attempts {', '.join(map(str, numbers))}"


def _who(parties: Sequence[str]) -> str:
    if len(parties) == 1:
        return f"party '{parties[0]}' in "
    return f"{len(parties)} parties ({_quoted(parties)}) in "


def round_failures(attempts: Sequence[Mapping[str, str]]) -> str:
    """Every attempt's failures (party or :data:`ROUND` -> reason, one mapping per attempt)
    for a failed round's message: each distinct reason once, after the parties and attempts
    that gave it (``10 parties ('p1', ..., 'p10') in attempts 1-3: <reason>``; an attempt's
    own failure: ``attempts 1-3: <reason>``), the entries joined by `` | `` in order of first
    appearance. When the parties giving a reason differ between attempts, each attempt names
    its own: ``party 'a' in attempt 1; party 'b' in attempt 2: <reason>``."""
    seen: dict[str, dict[tuple[str, ...], list[int]]] = {}  # reason -> parties -> attempts
    verbatim: dict[str, str] = {}  # reason -> as its first party said it
    for number, failures in enumerate(attempts, start=1):
        for why, parties in _shared(failures).items():
            seen.setdefault(why, {}).setdefault(tuple(parties), []).append(number)
            verbatim.setdefault(why, failures[parties[0]])
    entries = []
    for why, by_parties in seen.items():
        who = "; ".join(
            ("" if ps == (ROUND,) else _who(ps)) + _attempts(numbers)
            for ps, numbers in by_parties.items()
        )
        one = {p for ps in by_parties for p in ps}
        entries.append(f"{who}: {verbatim[why] if len(one) == 1 else why}")
    return " | ".join(entries) or "no reason recorded"
