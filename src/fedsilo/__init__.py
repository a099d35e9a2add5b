"""fedsilo: federated learning and analytics across organizations that never pool rows.

>>> import fedsilo
>>> fedsilo.__version__
'0.1.0'

The Python API mirrors the CLI::

    result = fedsilo.simulate("examples/mnist_3orgs.toml", baseline=True)  # any training kind
    result.final_global["accuracy"]
    result.save("runs/mnist")

    model = fedsilo.load_model("runs/mnist")   # .predict_proba(rows), .predict(rows)

    answer = fedsilo.query("examples/analytics/job.toml", "SELECT COUNT(*) FROM transactions")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "JobConfig",
    "Model",
    "Result",
    "__version__",
    "load_job",
    "load_model",
    "query",
    "simulate",
]

if TYPE_CHECKING:
    from fedsilo.analytics.run import query
    from fedsilo.config import JobConfig
    from fedsilo.jobs import load_job
    from fedsilo.predict import Model, load_model
    from fedsilo.results import Result
    from fedsilo.simulation import simulate


def __getattr__(name: str) -> Any:
    # Lazy: `import fedsilo` stays cheap (no torch import) until the API is used.
    if name == "JobConfig":
        from fedsilo.config import JobConfig

        return JobConfig
    if name == "load_job":  # any kind: horizontal, vertical, analytics
        from fedsilo.jobs import load_job

        return load_job
    if name in ("load_model", "Model"):  # a trained horizontal model scoring new rows
        from fedsilo import predict

        return getattr(predict, name)
    if name == "Result":
        from fedsilo.results import Result

        return Result
    if name == "simulate":
        from fedsilo.simulation import simulate

        return simulate
    if name == "query":
        from fedsilo.extras import require

        require("analytics", "fedsilo.query (federated analytics)")
        from fedsilo.analytics.run import query

        return query
    raise AttributeError(f"module 'fedsilo' has no attribute {name!r}")
