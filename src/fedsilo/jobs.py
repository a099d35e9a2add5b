"""One job model: ``Job = HorizontalJob | VerticalJob | AnalyticsJob``, discriminated on ``kind``.

A job file's top-level ``kind`` names what it is::

    kind = "horizontal"   # the default: parties hold the same columns (fedsilo.config.JobConfig)
    kind = "vertical"     # PSI + hetero LR or SecureBoost (fedsilo.vertical.config)
    kind = "analytics"    # federated SQL aggregates (fedsilo.analytics.config)
    kind = "vertical-score"   # saved vertical parts score new customers (fedsilo.vertical.config)

:func:`load_job` reads any kind (one TOML reader, one explainer with "Did you mean",
:mod:`fedsilo.config_base`); :func:`load_as` / :func:`parse_as` read one expected kind (a file
without ``kind`` is taken as that kind; a file of another kind is refused naming both). A file
without ``kind`` whose keys belong to another kind is refused with a message naming the
missing ``kind`` key, never with a list of "unknown key" errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar, Union

from pydantic import BaseModel, Field

from fedsilo.config_base import did_you_mean, read_toml, validate
from fedsilo.errors import ConfigError

if TYPE_CHECKING:
    from fedsilo.analytics.config import AnalyticsJob
    from fedsilo.config import JobConfig
    from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob

    Job: TypeAlias = JobConfig | VerticalJobConfig | AnalyticsJob | VerticalScoreJob
    TrainingJob: TypeAlias = JobConfig | VerticalJobConfig

J = TypeVar("J", bound=BaseModel)

HORIZONTAL, VERTICAL, ANALYTICS = "horizontal", "vertical", "analytics"
VERTICAL_SCORE = "vertical-score"
KINDS = (HORIZONTAL, VERTICAL, ANALYTICS, VERTICAL_SCORE)


def job_model(kind: str) -> type[BaseModel]:
    """The model of one ``kind``, imported on demand: a horizontal job never imports the
    vertical or analytics code (and their optional extras: PSI, HE, DuckDB)."""
    if kind == VERTICAL:
        from fedsilo.vertical.config import VerticalJobConfig

        return VerticalJobConfig
    if kind == VERTICAL_SCORE:
        from fedsilo.vertical.config import VerticalScoreJob

        return VerticalScoreJob
    if kind == ANALYTICS:
        from fedsilo.analytics.config import AnalyticsJob

        return AnalyticsJob
    from fedsilo.config import JobConfig

    return JobConfig


def _job_union() -> Any:
    models = tuple(job_model(k) for k in KINDS)
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007


def __getattr__(name: str) -> Any:
    # ``fedsilo.jobs.Job`` at run time: the discriminated union, for pydantic models and
    # TypeAdapter (its modules load on first use).
    if name == "Job":
        return _job_union()
    raise AttributeError(f"module 'fedsilo.jobs' has no attribute {name!r}")


def _kind_of(model: type[BaseModel]) -> str:
    default = model.model_fields["kind"].default
    assert isinstance(default, str)
    return default


def _own_keys(kind: str) -> set[str]:
    """Top-level keys that only ``kind`` uses (tell-tales of a file missing its ``kind``)."""
    others: set[str] = set()
    for k in KINDS:
        if k != kind:
            others |= set(job_model(k).model_fields)
    return set(job_model(kind).model_fields) - others


def job_kind(raw: dict[str, Any], *, source: str, default: str = HORIZONTAL) -> str:
    """The job's ``kind``: given, or ``default`` when absent and no key says otherwise."""
    kind = raw.get("kind")
    if kind is None:
        if set(raw) <= set(job_model(default).model_fields):
            return default  # nothing foreign: no need to look at the other kinds
        for other in KINDS:
            if other == default:
                continue
            tell = sorted(_own_keys(other) & set(raw))
            if tell:
                raise ConfigError(
                    f"{source}: key 'kind' is missing: keys {', '.join(tell)} belong to "
                    f'{_a(other)} job; add kind = "{other}" at the top of the file (or remove them '
                    f"for a {default} job)"
                )
        return default
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(
            f"{source}: key 'kind': {kind!r} is not one of {', '.join(map(repr, KINDS))}."
            f"{did_you_mean(str(kind), list(KINDS))}"
        )
    return kind


def parse_job(raw: dict[str, Any], *, source: str = "job", base_dir: Path | None = None) -> Job:
    """Validate a job dict of any kind; relative data paths resolve against ``base_dir``."""
    kind = job_kind(raw, source=source)
    # Dispatch on the tag first, then validate that kind's model: the discriminated union's
    # semantics, without importing the other kinds (and their optional extras).
    return parse_as(job_model(kind), raw, source=source, base_dir=base_dir)  # type: ignore[return-value]


def load_job(path: str | Path) -> Job:
    """Read and validate a TOML job file of any kind."""
    path = Path(path)
    return parse_job(read_toml(path), source=str(path), base_dir=path.parent)


def parse_as(
    model: type[J], raw: dict[str, Any], *, source: str = "job", base_dir: Path | None = None
) -> J:
    """Validate a job dict of one expected kind (``kind`` may be left out)."""
    expected = _kind_of(model)
    kind = job_kind(raw, source=source, default=expected)
    if kind != expected:
        raise ConfigError(
            f"{source} is {_a(kind)} job (kind = {kind!r}) but {_a(expected)} job is needed "
            "here; " + _WHERE[kind]
        )
    job = validate(model, {**raw, "kind": kind}, source=source)
    return job.with_base_dir(base_dir) if base_dir is not None else job  # type: ignore[attr-defined]


def load_as(model: type[J], path: str | Path) -> J:
    """Read and validate a TOML job file of one expected kind."""
    path = Path(path)
    return parse_as(model, read_toml(path), source=str(path), base_dir=path.parent)


_WHERE = {
    HORIZONTAL: "run it with `fedsilo simulate` or fedsilo.simulate()",
    VERTICAL: "run it with `fedsilo simulate` or fedsilo.simulate()",
    ANALYTICS: "run it with `fedsilo query JOB SQL` or fedsilo.query()",
    VERTICAL_SCORE: "run it with `fedsilo simulate` or `fedsilo submit` after its training run",
}


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def resolve(path: Path | None, base_dir: Path) -> Path | None:
    """A data path relative to the job file's directory (absolute paths unchanged)."""
    return path if path is None or path.is_absolute() else base_dir / path
