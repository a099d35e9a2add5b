"""fedsilo: federated learning and analytics across organizations that never pool rows.

>>> import fedsilo
>>> fedsilo.__version__
'0.1.0'

The Python API mirrors the CLI::

    result = fedsilo.simulate("examples/mnist_3orgs.toml", baseline=True)
    result.final_global["accuracy"]
    result.save("runs/mnist")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["JobConfig", "Result", "__version__", "load_job", "simulate"]

if TYPE_CHECKING:
    from fedsilo.config import JobConfig, load_job
    from fedsilo.results import Result
    from fedsilo.simulation import simulate


def __getattr__(name: str) -> Any:
    # Lazy: `import fedsilo` stays cheap (no torch import) until the API is used.
    if name in ("JobConfig", "load_job"):
        from fedsilo import config

        return getattr(config, name)
    if name == "Result":
        from fedsilo.results import Result

        return Result
    if name == "simulate":
        from fedsilo.simulation import simulate

        return simulate
    raise AttributeError(f"module 'fedsilo' has no attribute {name!r}")
