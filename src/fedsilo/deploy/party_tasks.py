"""What a party process answers: one handler over the route tables of the party's roles.

:class:`TaskRouter` is the party process's one handler: one
:func:`~fedsilo.protocol.serve.serve` over the union of the route tables of the party's roles
(each task is decoded once): training kinds to the
:class:`~fedsilo.runtime.party.PartyAgent`, QUERY to
:class:`~fedsilo.deploy.party_analytics.PartyAnalytics`, vertical kinds to the vertical
agent. A role the party has no data for is refused with a config error naming the
``party.toml`` setting; the router itself imports no role's code, so a base install (no
``analytics`` or ``vertical`` extra) runs a training party.

The router's ``on_reply`` (the party's guard, :meth:`~fedsilo.privacy.guard.PrivacyGuard.seal`)
sees every reply it sends, training, analytics, vertical and refusals alike: each is appended to
its audit log (``[privacy] audit_log``) and leaves with the party's signed anchor of that log.
"""

from __future__ import annotations

from collections.abc import Callable

from fedsilo.errors import ConfigError
from fedsilo.protocol.messages import TaskKind
from fedsilo.protocol.serve import Route, Routes, refuse, serve
from fedsilo.runtime.party import TRAINING_KINDS
from fedsilo.vertical.kinds import VERTICAL_KINDS


class TaskRouter:
    """The party process's one handler: the union of its roles' route tables, one ``serve``.

    Training kinds go to the PartyAgent's routes, QUERY to analytics, vertical kinds to the
    vertical agent. A party without the matching data answers with a ``config`` error naming
    itself and the ``party.toml`` setting to add; malformed tasks get an error reply too.
    ``on_reply`` (the party guard's seal: anchor and audit log) sees every reply that leaves
    and returns the bytes that do.
    """

    def __init__(
        self,
        training: Routes | None,
        analytics: Routes | None,
        vertical: Routes | None = None,
        *,
        name: str = "",
        on_reply: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        def missing(what: str) -> Route:
            return refuse(ConfigError(f"party {name!r} has {what} to its party.toml"))

        no_training = missing('no training data: add data = "<file>"')
        no_vertical = missing('no vertical data: add [vertical] data = "<file>"')
        routes: dict[TaskKind, Route] = {
            **(training if training is not None else dict.fromkeys(TRAINING_KINDS, no_training)),
            **(vertical if vertical is not None else dict.fromkeys(VERTICAL_KINDS, no_vertical)),
            **(analytics or {}),
        }
        self._serve = serve(name, routes, on_reply=on_reply)

    def handle(self, data: bytes) -> bytes:
        return self._serve(data)
