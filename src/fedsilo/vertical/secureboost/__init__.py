"""SecureBoost (Cheng et al. 2019): gradient-boosted trees over vertically split data.

See docs/secureboost.md. Entry points: :func:`train_secureboost`, :func:`predict_secureboost`;
the centralized plaintext reference of the same algorithm is :func:`train_plain`.
"""

from fedsilo.vertical.secureboost.boost import PlainModel, split_rows, train_plain
from fedsilo.vertical.secureboost.driver import (
    SecureBoostResult,
    predict_secureboost,
    relay,
    train_secureboost,
)
from fedsilo.vertical.secureboost.guest import SecureBoostGuest
from fedsilo.vertical.secureboost.host import SecureBoostHost
from fedsilo.vertical.secureboost.tree import Tree, TreeParams

__all__ = [
    "PlainModel",
    "SecureBoostGuest",
    "SecureBoostHost",
    "SecureBoostResult",
    "Tree",
    "TreeParams",
    "predict_secureboost",
    "relay",
    "split_rows",
    "train_plain",
    "train_secureboost",
]
