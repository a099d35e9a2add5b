"""The coordinator's copy of each party's audit-log anchors, kept in the job store.

Every party reply may carry an ``anchor`` (its Ed25519-signed audit-log head,
:class:`fedsilo.privacy.audit.Anchor`). :class:`AnchorKeeper` wraps a :class:`Transport`: for
every reply that arrives it checks the anchor's signature and that it names the sender, and
stores it in the :class:`~fedsilo.runtime.store.JobStore` (``anchors`` table). An anchor that
does not verify is not stored (and logged): it cannot be evidence of anything. A party that
signs with a different key than its earlier anchors in this store is logged too (a new
identity key is worth a look; ``fedsilo audit verify --key`` pins one).

The coordinator keeps these anchors for the parties: with them ``fedsilo audit verify LOG
--anchors state.sqlite`` shows that a party's log was cut short, rewritten or deleted, even
by someone holding the party's machine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fedsilo.errors import AuditError, ProtocolError
from fedsilo.privacy.audit import Anchor
from fedsilo.protocol.messages import Message
from fedsilo.runtime.store import JobStore
from fedsilo.runtime.transport import Gathered, Transport

log = logging.getLogger(__name__)


class AnchorKeeper:
    """A :class:`Transport` that stores the anchors of the replies passing through it."""

    def __init__(self, inner: Transport, store: JobStore, job_id: str) -> None:
        self._inner = inner
        self._store = store
        self._job_id = job_id
        self._keys: dict[str, str] = {}

    def party_names(self) -> list[str]:
        return self._inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        gathered = self._inner.exchange(tasks, timeout_s=timeout_s)
        for party, reply in gathered.replies.items():
            if reply.anchor is not None:
                self.keep(party, reply)
        return gathered

    def keep(self, party: str, reply: Message) -> None:
        """Store ``reply``'s anchor if it verifies and is ``party``'s own."""
        try:
            anchor = Anchor.from_json(reply.anchor)
            anchor.check_signature()
        except (AuditError, ProtocolError) as exc:
            log.warning("party %s sent an anchor that does not verify (%s); not kept", party, exc)
            return
        if anchor.party != party:
            log.warning("party %s sent an anchor naming %r; not kept", party, anchor.party)
            return
        known = self._keys.get(party)
        if known is None:
            earlier = self._store.anchors(party)
            known = str(earlier[-1]["key"]) if earlier else anchor.key
        if known != anchor.key:
            log.warning(
                "party %s signs its anchors with a new identity key (%s..., was %s...)",
                party,
                anchor.key[:16],
                known[:16],
            )
        self._keys[party] = anchor.key
        self._store.record_anchor(self._job_id, party, reply.round, anchor.to_json())
