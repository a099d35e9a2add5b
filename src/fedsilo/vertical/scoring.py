"""Scoring new customers with a finished vertical training run's saved parts.

A scoring job (``kind = "vertical-score"``, :class:`~fedsilo.vertical.config.VerticalScoreJob`)
names the training run and each party's file of new customers. It runs over the same
:class:`~fedsilo.vertical.runner.VerticalRunner` as training (:meth:`run_scoring`):

1. **PSI** over the new files, as in training (the coordinator sees counts, never an ID); each
   party reads its own saved part first (its role and its training encoding: column types,
   category values, missing-value fills) and refuses, naming itself and the path it looked
   at, if it has none; it encodes its new file with that encoding
   (:func:`~fedsilo.vertical.data.load_scoring_table`), so a customer's score does not depend
   on the rest of the batch. Customers not shared by every party are not scored; they are
   reported by count per party.
2. **Scores**: hetero LR as in training's held-out scoring (hosts' partial scores encrypted
   under a fresh key of the coordinator and sealed for the guest, the guest's masked sum
   decrypted by the coordinator); SecureBoost by routing every row through the guest's trees,
   each split answered by its owner from its own split table.
3. ``VERTICAL_PREDICTIONS``: the guest keeps the scores (its ID column and ``score``); the
   coordinator learns only how many and, in a deployment, where and the file's SHA-256.

The training run is read from its ``metrics.json`` (``job.config``): in a simulation the run
directory (parts under ``models/``), in a deployment the training job's id on the server
(each party finds its part under ``[vertical] models/<job id>/``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.result_doc import write_json
from fedsilo.runtime.transport import InProcessTransport, Transport
from fedsilo.vertical.agent import VerticalPartyAgent, write_predictions
from fedsilo.vertical.bodies import ScoreOpen
from fedsilo.vertical.config import VerticalJobConfig, VerticalScoreJob, parse_vertical_job
from fedsilo.vertical.result import written_file
from fedsilo.vertical.runner import ScoreOutcome, StepCallback, VerticalRunner

SCORE_FILE = "score.json"
SIMULATION_OUT_DIR = "in the output directory (simulation)"


def trained_job(run_dir: Path, *, source: str) -> VerticalJobConfig:
    """The training job of ``run_dir`` (its metrics.json), refused naming the file."""
    path = Path(run_dir) / "metrics.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{source}: key 'run': {path} cannot be read ({exc}); run the training job first "
            "and name its run directory (simulation) or job id (deployment)"
        ) from None
    config = doc.get("job", {}).get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict) or config.get("kind") != "vertical":
        raise ConfigError(f"{source}: key 'run': {path} is not a vertical training run")
    unused = "hetero_lr" if config.get("algorithm") == "secureboost" else "secureboost"
    config = {k: v for k, v in config.items() if k != unused}  # written with its defaults
    return parse_vertical_job(config, source=str(path))


@dataclass
class ScoreResult:
    """A scoring job's outcome: counts, and (simulation) the guest's predictions."""

    job: VerticalScoreJob
    trained: VerticalJobConfig
    outcome: ScoreOutcome
    wall_time_s: float = 0.0
    guest: VerticalPartyAgent | None = None  # simulation: the in-process guest
    predictions_written: dict[str, str] | None = None
    """Simulation, after :meth:`save`: where the guest's predictions.csv was written."""

    @property
    def alignment(self) -> dict[str, Any]:
        return self.outcome.report()

    def doc(self) -> dict[str, Any]:
        """score.json: the job, the training run, counts and where the scores are kept."""
        t = self.trained
        return {
            "job": {
                "name": self.job.name,
                "kind": self.job.kind,
                "config": self.job.model_dump(mode="json"),
            },
            "run": {"name": t.name, "algorithm": t.algorithm.value, "he_scheme": t.he.scheme.value},
            "guest": t.guest.name,
            "hosts": [h.name for h in t.hosts],
            "alignment": self.alignment,
            "predictions": {
                **self.outcome.predictions.model_dump(exclude_none=True),
                **(self.predictions_written or {}),
            },
            "wall_time_s": self.wall_time_s,
        }

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """score.json and, in simulation, the guest's ``predictions.csv``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"score_json": out / SCORE_FILE}
        if self.guest is not None and self.guest.predictions is not None:
            paths["predictions"] = write_predictions(
                out / "predictions.csv", *self.guest.predictions
            )
            self.predictions_written = written_file(paths["predictions"], SIMULATION_OUT_DIR)
        write_json(paths["score_json"], self.doc())
        return paths


def score_runner(
    job: VerticalScoreJob,
    trained: VerticalJobConfig,
    transport: Transport,
    *,
    run_id: str,
    job_id: str | None = None,
    on_psi_step: StepCallback | None = None,
) -> VerticalRunner:
    """The runner of a scoring job: the training run's roles over the new files."""
    score = ScoreOpen(run=run_id, algorithm=trained.algorithm.value)
    return VerticalRunner(
        job.training_job(trained),
        transport,
        job_id=job_id or job.name,
        on_psi_step=on_psi_step,
        score=score,
        title=f"scoring job {job.name!r} (trained run {run_id!r})",
    )


@dataclass(frozen=True)
class ScoreSimulation:
    """A scoring job checked against its training run (:func:`prepare_vertical_score`),
    ready to run with every party in this process."""

    job: VerticalScoreJob
    trained: VerticalJobConfig

    def run(self, *, on_psi_step: StepCallback | None = None) -> ScoreResult:
        """PSI over the new files, then the scores (the guest keeps them)."""
        started = time.monotonic()
        job, trained, run = self.job, self.trained, Path(self.job.run)
        agents = {p.name: VerticalPartyAgent.for_scoring(p, run / "models") for p in job.parties}
        runner = score_runner(
            job, trained, InProcessTransport(agents), run_id=run.name, on_psi_step=on_psi_step
        )
        outcome = runner.run_scoring()
        return ScoreResult(
            job, trained, outcome, time.monotonic() - started, guest=agents[trained.guest.name]
        )


def prepare_vertical_score(job: VerticalScoreJob) -> ScoreSimulation:
    """Read ``job``'s training run and check the job against it: the configuration errors a
    simulated scoring job can have (no readable run, parties other than the run's) are raised
    here, before any party does work. What each party checks itself (its saved part, its
    file) it checks at ``PSI_OPEN``."""
    trained = trained_job(Path(job.run), source=f"scoring job {job.name!r}")
    job.training_job(trained)  # the parties must be the run's
    return ScoreSimulation(job, trained)


def simulate_vertical_score(
    job: VerticalScoreJob, *, on_psi_step: StepCallback | None = None
) -> ScoreResult:
    """Score ``job``'s new customers with every party in this process."""
    return prepare_vertical_score(job).run(on_psi_step=on_psi_step)


def run_score_job(
    job: VerticalScoreJob,
    transport: Transport,
    *,
    run_dir: Path,
    job_id: str,
    out: Path,
    on_psi_step: Callable[[str, int, int], None] | None = None,
) -> ScoreResult:
    """A deployed scoring job: ``job.run`` is a training job id whose results are in
    ``run_dir``; writes score.json to ``out`` (the scores stay at the guest)."""
    started = time.monotonic()
    trained = trained_job(run_dir / job.run, source=f"scoring job {job.name!r}")
    runner = score_runner(
        job, trained, transport, run_id=job.run, job_id=job_id, on_psi_step=on_psi_step
    )
    result = ScoreResult(job, trained, runner.run_scoring(), time.monotonic() - started)
    result.save(out)
    return result
