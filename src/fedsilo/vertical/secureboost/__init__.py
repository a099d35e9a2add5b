"""SecureBoost (Cheng et al. 2019): gradient-boosted trees over vertically split data.

See docs/secureboost.md. A SecureBoost job runs like every vertical job, through
:class:`~fedsilo.vertical.runner.VerticalRunner` (``fedsilo simulate`` / the deployed
server): :class:`SecureBoostGuest` and :class:`SecureBoostHost` are the parties' route
tables, :func:`relay` the coordinator's keyless loop. The centralized plaintext reference of
the same algorithm is :func:`train_plain`.
"""

from fedsilo.vertical.secureboost.boost import PlainModel, split_rows, train_plain
from fedsilo.vertical.secureboost.guest import SecureBoostGuest
from fedsilo.vertical.secureboost.host import SecureBoostHost
from fedsilo.vertical.secureboost.relay import relay
from fedsilo.vertical.secureboost.tree import Tree, TreeParams

__all__ = [
    "PlainModel",
    "SecureBoostGuest",
    "SecureBoostHost",
    "Tree",
    "TreeParams",
    "relay",
    "split_rows",
    "train_plain",
]
