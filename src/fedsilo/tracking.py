"""Experiment tracking: a simulated job's parameters, per-round metrics, privacy spend and files
in MLflow and TensorBoard, where ML teams look first.

A job's optional ``[tracking]`` section (or ``fedsilo simulate --mlflow URI --tensorboard DIR``)::

    [tracking]
    mlflow = "file:runs/mlruns"   # MLflow tracking URI: a local file: store works offline,
                                  # http(s)://... a tracking server
    experiment = "hospitals"      # MLflow experiment (default: the job's name)
    run_name = "lr-0.1"           # default: "<job name>-seed<seed>"
    tensorboard = "runs/tb"       # TensorBoard event files under <dir>/<run name>-<time>

What is logged, in both sinks under the same names (steps are rounds, epochs or trees):

* parameters: the validated job, flattened (``training.learning_rate``; lists as JSON);
* every metrics.json ``history`` entry's numbers as scalars: ``global/accuracy``,
  ``parties/<party>/auc``, ``train_loss``, ``duration_s``, the privacy spend
  ``privacy/epsilon`` and ``privacy/parties/<party>/epsilon``; horizontal rounds as they end,
  vertical epochs or trees when training ends;
* at the end, ``final/global/<metric>``, ``final/privacy/epsilon`` and ``baseline/<metric>``;
* MLflow only: the run's files (model.safetensors or the model parts, metrics.json,
  metrics.csv, report.html) as artifacts; TensorBoard: the job as text (``job/config``).

Both libraries are the optional extra ``tracking`` (``mlflow-skinny``, ``tensorboard``);
without it a job asking for tracking fails before training with one line saying ``pip install
'fedsilo[tracking]'`` (:func:`fedsilo.extras.require`). MLflow 3 keeps its file store in maintenance mode behind
``MLFLOW_ALLOW_FILE_STORE``; a ``file:`` URI (or a plain path) in the job is taken as that opt
in, set while the store is opened. Deployed jobs refuse ``[tracking]``: a server does not write
where a submitted job tells it to.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

from fedsilo.config_base import Strict
from fedsilo.errors import ConfigError
from fedsilo.extras import require
from fedsilo.result_doc import TrainingJob

log = logging.getLogger(__name__)

STEP_KEYS = ("round", "epoch", "tree")
_MLFLOW_NAME = re.compile(r"[^\w.\- :/]")
_MAX_PARAM_CHARS = 6000  # MLflow's limit on one parameter value
_BATCH = 100  # MLflow's limit on parameters per log_batch call


class TrackingConfig(Strict):
    """The job's ``[tracking]`` section: where to log (nothing unless a sink is named)."""

    mlflow: str | None = Field(default=None, min_length=1)
    experiment: str | None = Field(default=None, min_length=1)
    run_name: str | None = Field(default=None, min_length=1)
    tensorboard: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.mlflow is not None or self.tensorboard is not None


class TrackedJob(TrainingJob, Protocol):
    """What tracking reads of a job: the core's, and its ``[tracking]`` section."""

    @property
    def tracking(self) -> TrackingConfig: ...


class TrackedResult(Protocol):
    """What tracking reads of a finished run (``Result`` or ``VerticalResult``)."""

    tracking: dict[str, Any] | None

    def metrics_json(self) -> dict[str, Any]: ...
    def save(self, out_dir: str | Path) -> dict[str, Path]: ...


J = TypeVar("J", bound=BaseModel)


def with_tracking(job: J, *, mlflow: str | None = None, tensorboard: Path | None = None) -> J:
    """A copy of ``job`` whose ``[tracking]`` also names these sinks (the CLI's ``--mlflow``,
    ``--tensorboard``); the job's own settings stay where not overridden."""
    current = getattr(job, "tracking", None)
    if not isinstance(current, TrackingConfig):
        raise ConfigError(f"job {getattr(job, 'name', '?')!r} has no [tracking] section to set")
    raw = current.model_dump()
    if mlflow is not None:
        raw["mlflow"] = mlflow
    if tensorboard is not None:
        raw["tensorboard"] = tensorboard
    try:
        tracking = TrackingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"tracking options: {exc.errors()[0]['msg']}") from None
    return job.model_copy(update={"tracking": tracking})


def refuse_in_deployment(raw: Mapping[str, Any], *, source: str) -> None:
    """ConfigError for a submitted job with ``[tracking]``: a server does not write to the
    URIs or directories a submitted job names."""
    if "tracking" in raw:
        raise ConfigError(
            f"{source}: [tracking] is for `fedsilo simulate`; a deployed job may not name "
            "where the server writes (MLflow URIs, TensorBoard directories). Remove the "
            "section before submitting."
        )


# -- what gets logged ---------------------------------------------------------------------


def scalars(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number in ``entry`` (nested mappings joined with ``/``); the step keys
    (``round``, ``epoch``, ``tree``), text, booleans and lists are left out."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if not prefix and key in STEP_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars(value, f"{name}/"))
        elif _is_number(value) and math.isfinite(value):
            out[name] = float(value)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The job flattened to ``section.key -> text`` (lists and empty tables as JSON)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(params(value, f"{name}."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def step_of(entry: Mapping[str, Any], default: int) -> int:
    for key in STEP_KEYS:
        if isinstance(entry.get(key), int):
            return int(entry[key])
    return default


# -- sinks --------------------------------------------------------------------------------


class Sink(Protocol):
    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...
    def finish(self, run_dir: Path | None, ok: bool) -> None: ...
    def info(self) -> dict[str, Any]: ...


class MlflowSink:
    """One MLflow run through ``MlflowClient`` (no process-global active run)."""

    def __init__(self, uri: str, experiment: str, run_name: str, job: TrackedJob) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        with _file_store_allowed(uri):
            self._client = MlflowClient(tracking_uri=uri)
            found = self._client.get_experiment_by_name(experiment)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self._client.create_experiment(experiment)
            )
        self._uri = uri
        tags = {"fedsilo.kind": job.kind, "fedsilo.seed": str(job.seed), "fedsilo.job": job.name}
        run = self._client.create_run(self._experiment_id, run_name=run_name, tags=tags)
        self._run_id: str = run.info.run_id
        flat = params(job.model_dump(mode="json"))
        items = [Param(_mlflow_name(k), v[:_MAX_PARAM_CHARS]) for k, v in sorted(flat.items())]
        for start in range(0, len(items), _BATCH):
            self._client.log_batch(self._run_id, params=items[start : start + _BATCH])

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(_mlflow_name(k), v, stamp, step) for k, v in values.items()]
        for start in range(0, len(metrics), _BATCH * 10):
            self._client.log_batch(self._run_id, metrics=metrics[start : start + _BATCH * 10])

    def finish(self, run_dir: Path | None, ok: bool) -> None:
        if run_dir is not None:
            self._client.log_artifacts(self._run_id, str(run_dir))
        self._client.set_terminated(self._run_id, status="FINISHED" if ok else "FAILED")

    def info(self) -> dict[str, Any]:
        return {"uri": self._uri, "experiment_id": self._experiment_id, "run_id": self._run_id}


class TensorBoardSink:
    """Event files through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, root: Path, run_name: str, job: TrackedJob) -> None:
        from torch.utils.tensorboard import SummaryWriter

        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%f")
        self.log_dir = Path(root) / f"{_file_name(run_name)}-{stamp}"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        config = json.dumps(job.model_dump(mode="json"), indent=2, sort_keys=True)
        self._writer.add_text("job/config", f"```\n{config}\n```", 0)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)

    def finish(self, run_dir: Path | None, ok: bool) -> None:
        self._writer.flush()
        self._writer.close()

    def info(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir)}


# -- the tracker --------------------------------------------------------------------------


class Tracker:
    """The job's sinks, fed history entries as they come and the finished result at the end."""

    def __init__(self, sinks: Mapping[str, Sink]) -> None:
        self._sinks = dict(sinks)
        self._logged = 0  # history entries logged so far
        self._last_step = 0

    @classmethod
    def open(cls, job: TrackedJob) -> Tracker | None:
        """The job's tracker (``None`` without ``[tracking]``); ConfigError without the extra."""
        cfg = job.tracking
        if not cfg.enabled:
            return None
        require("tracking", f"[tracking] of job {job.name!r}")
        run_name = cfg.run_name or f"{job.name}-seed{job.seed}"
        sinks: dict[str, Sink] = {}
        if cfg.tensorboard is not None:
            sinks["tensorboard"] = TensorBoardSink(cfg.tensorboard, run_name, job)
        if cfg.mlflow is not None:
            sinks["mlflow"] = MlflowSink(cfg.mlflow, cfg.experiment or job.name, run_name, job)
        return cls(sinks)

    def entry(self, entry: Mapping[str, Any]) -> None:
        """Log one metrics.json history entry (a round, epoch or tree) at its step."""
        self._logged += 1
        self._last_step = step_of(entry, self._logged)
        values = scalars(entry)
        for sink in self._sinks.values():
            sink.scalars(self._last_step, values)

    def finish(self, result: TrackedResult) -> None:
        """The history not logged yet, the final metrics and (MLflow) the run's files."""
        doc = result.metrics_json()
        for item in doc["history"][self._logged :]:
            self.entry(item)
        final = scalars({"final": doc["final"], "baseline": doc.get("baseline") or {}})
        for sink in self._sinks.values():
            sink.scalars(self._last_step, final)
        result.tracking = {name: sink.info() for name, sink in self._sinks.items()}
        with tempfile.TemporaryDirectory(prefix="fedsilo-tracking-") as tmp:
            run_dir = Path(tmp) / "run"
            result.save(run_dir)
            for sink in self._sinks.values():
                sink.finish(run_dir, ok=True)
        log.info("tracked: %s", result.tracking)

    def fail(self) -> None:
        for sink in self._sinks.values():
            try:
                sink.finish(None, ok=False)
            except Exception:  # the training error matters more than a tracking one
                log.exception("could not close the tracking run")


@contextlib.contextmanager
def tracked(job: TrackedJob) -> Iterator[Tracker | None]:
    """``with tracked(job) as tracker:`` a run marked failed if the block raises."""
    tracker = Tracker.open(job)
    try:
        yield tracker
    except BaseException:
        if tracker is not None:
            tracker.fail()
        raise


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """Opt in to MLflow's file store while it is opened, for ``file:`` URIs and plain paths."""
    if "://" in uri and not uri.startswith("file:"):
        yield
        return
    key = "MLFLOW_ALLOW_FILE_STORE"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _mlflow_name(name: str) -> str:
    return _MLFLOW_NAME.sub("_", name)


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name)
