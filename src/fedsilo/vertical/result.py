"""A vertical job's results: metrics.json (the shared core), metrics.csv, report.html, model parts.

The same :class:`VerticalResult` is written by ``fedsilo simulate`` (with every party's part
under ``models/``, since the simulated parties live in this process) and by the deployed
server (metrics and report only: each party process keeps its own part). Either way
``metrics.json["vertical"]["model_parts"]`` says where each part is and its SHA-256.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.result_doc import core, finite, write_json
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig
from fedsilo.vertical.report import render_report
from fedsilo.vertical.runner import VerticalOutcome

METRIC_KEYS = ("auc", "ks", "accuracy", "f1")
CSV_METRICS = ("loss", "accuracy", "f1", "auc", "ks", "examples")
ModelWriter = Callable[[str, Path], Path]


def model_label(algorithm: VerticalAlgorithm) -> tuple[str, str]:
    """(federated model, centralized baseline) names for tables and reports."""
    if algorithm is VerticalAlgorithm.SECUREBOOST:
        return "SecureBoost", "centralized GBM (baseline)"
    return "hetero LR", "centralized LR (baseline)"


@dataclass
class VerticalResult:
    job: VerticalJobConfig
    outcome: VerticalOutcome
    baseline: dict[str, float] | None = None
    baseline_train: dict[str, float] | None = None
    wall_time_s: float = 0.0
    tracking: dict[str, Any] | None = None  # set by fedsilo.tracking: where it was logged
    model_writers: dict[str, tuple[str, ModelWriter]] = field(default_factory=dict, repr=False)
    heldout_scores: dict[object, float] | None = field(default=None, repr=False)
    """Simulation: the guest's score of every held-out customer, by ID (stays in memory)."""
    guest_only: dict[str, float] | None = None
    """``--baseline``: the centralized model on the guest's columns alone, held-out metrics."""
    parts_written: dict[str, dict[str, str]] = field(default_factory=dict)
    """Simulation, after :meth:`save`: where each party's part was written (path, SHA-256)."""

    @property
    def metrics(self) -> dict[str, float]:
        """Held-out metrics (AUC, KS, accuracy, F1, log loss) computed by the guest."""
        return self.outcome.test

    @property
    def losses(self) -> list[float]:
        """Hetero LR's Taylor loss per epoch (empty for SecureBoost)."""
        return self.outcome.history.get("loss_per_epoch", [])

    @property
    def epoch_seconds(self) -> list[float]:
        return self.outcome.history.get("seconds_per_epoch", [])

    @property
    def converged(self) -> bool | None:
        return self.outcome.converged

    @property
    def alignment(self) -> dict[str, Any]:
        return self.outcome.alignment.report()

    @property
    def final_global(self) -> dict[str, float]:
        """Held-out metrics of the federated model (the shared ``final.global``)."""
        return self.outcome.test

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per epoch (hetero LR: Taylor loss) or tree (SecureBoost: log losses)."""
        h = self.outcome.history
        if self.job.algorithm is VerticalAlgorithm.SECUREBOOST:
            train, valid = h.get("train_loss_per_tree", []), h.get("valid_loss_per_tree", [])
            seconds = h.get("seconds_per_tree", [])
            return [
                {
                    "tree": t + 1,
                    "train_loss": loss,
                    "valid_loss": valid[t] if t < len(valid) else None,
                    "duration_s": seconds[t] if t < len(seconds) else None,
                }
                for t, loss in enumerate(train)
            ]
        losses, seconds = h.get("loss_per_epoch", []), h.get("seconds_per_epoch", [])
        return [
            {
                "epoch": e + 1,
                "taylor_loss": loss,
                "duration_s": seconds[e] if e < len(seconds) else None,
            }
            for e, loss in enumerate(losses)
        ]

    def metrics_json(self) -> dict[str, Any]:
        """The shared core (:mod:`fedsilo.result_doc`) and a ``vertical`` section beside it."""
        job = self.job
        out = core(
            job,
            final_global=self.outcome.test,
            final_parties={},  # only the guest holds labels: no per-party evaluation
            baseline=self.baseline,
            history=self.history,
            wall_time_s=self.wall_time_s,
            tracking=self.tracking,
            importance=self.outcome.importance,
        )
        section: dict[str, Any] = {
            "algorithm": job.algorithm.value,
            "he_scheme": job.he.scheme.value,
            "guest": job.guest.name,
            "hosts": [h.name for h in job.hosts],
            "alignment": self.alignment,
            "train": self.outcome.train,
            "baseline_train": self.baseline_train,
            "baseline_guest_only": self.guest_only,
            "hosts_add": hosts_add(self.baseline, self.guest_only),
        }
        if job.algorithm is VerticalAlgorithm.SECUREBOOST:
            section["n_trees"] = self.outcome.n_trees
        else:
            section["epochs_run"] = len(self.losses)
            section["converged"] = self.outcome.converged
        section["model_parts"] = {**self.outcome.model_parts, **self.parts_written}
        out["vertical"] = finite(section)
        return out

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """metrics.json, metrics.csv, report.html (plots inline) and, in simulation, one model
        part per party under ``models/`` (key ``model``); the keys of every result's save()."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        if self.model_writers:
            paths["model"] = out / "models"
            paths["model"].mkdir(exist_ok=True)
        for name, (suffix, write) in self.model_writers.items():
            part = write(name, out / "models" / f"{name}{suffix}")
            self.parts_written[name] = written_file(part, SIMULATION_RUN_DIR)
        doc = self.metrics_json()
        paths["metrics_json"] = out / "metrics.json"
        write_json(paths["metrics_json"], doc)
        paths["metrics_csv"] = out / "metrics.csv"
        self._write_csv(paths["metrics_csv"], doc)
        paths["report"] = out / "report.html"
        paths["report"].write_text(render_report(doc), encoding="utf-8")
        return paths

    def _write_csv(self, path: Path, doc: Mapping[str, Any]) -> None:
        """One row per epoch or tree (its losses, seconds), then the final metrics per model."""
        unit = "tree" if self.job.algorithm is VerticalAlgorithm.SECUREBOOST else "epoch"
        steps = ["train_loss", "valid_loss"] if unit == "tree" else ["taylor_loss"]
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([unit, "scope", *steps, "duration_s", *CSV_METRICS])
            for entry in doc["history"]:
                cells = [entry.get(k) for k in (*steps, "duration_s")]
                writer.writerow([entry[unit], "training", *_cells(cells), *[""] * len(CSV_METRICS)])
            v = doc["vertical"]
            for scope, metrics in (
                ("global", doc["final"]["global"]),
                ("train", v["train"]),
                ("baseline", doc["baseline"]),
                ("baseline_train", v["baseline_train"]),
                ("baseline_guest_only", v["baseline_guest_only"]),
            ):
                if metrics:
                    row = [metrics.get(k) for k in CSV_METRICS]
                    writer.writerow(["", scope, *[""] * (len(steps) + 1), *_cells(row)])

    def table_rows(self) -> list[tuple[str, Mapping[str, float]]]:
        fed, central = model_label(self.job.algorithm)
        rows: list[tuple[str, Mapping[str, float]]] = [(fed, self.outcome.test)]
        if self.baseline is not None:
            rows.append((central, self.baseline))
        if self.guest_only is not None:
            rows.append((GUEST_ONLY, self.guest_only))
        return rows


GUEST_ONLY = "guest only (baseline)"


SIMULATION_RUN_DIR = "in the run directory (simulation)"


def written_file(path: Path, stored: str) -> dict[str, str]:
    """Where a simulation wrote a party's file (a deployed party reports its own): ``stored``,
    the absolute path and the file's SHA-256, as a deployed party's reply has them."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"stored": stored, "path": str(path.resolve()), "sha256": digest}


def hosts_add(
    pooled: Mapping[str, float] | None, guest_only: Mapping[str, float] | None
) -> dict[str, float] | None:
    """What the hosts' columns add: pooled minus guest-only, per held-out metric."""
    if not pooled or not guest_only:
        return None
    return {k: pooled[k] - guest_only[k] for k in METRIC_KEYS if k in pooled and k in guest_only}


def _cells(values: list[Any]) -> list[Any]:
    return ["" if v is None else v for v in values]
