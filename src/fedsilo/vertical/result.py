"""A vertical job's results: metrics.json (self-describing), report.html/.md and model parts.

The same :class:`VerticalResult` is written by ``fedsilo simulate`` (with every party's part
under ``models/``, since the simulated parties live in this process) and by the deployed
server (metrics and report only: each party process keeps its own part, see
``metrics.json["model_parts"]`` for where and its SHA-256).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig
from fedsilo.vertical.report import render_report
from fedsilo.vertical.runner import VerticalOutcome

METRIC_KEYS = ("auc", "ks", "accuracy", "f1")
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
    model_writers: dict[str, tuple[str, ModelWriter]] = field(default_factory=dict, repr=False)

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

    def metrics_json(self) -> dict[str, Any]:
        job = self.job
        out: dict[str, Any] = {
            "job": job.name,
            "kind": "vertical",
            "algorithm": job.algorithm.value,
            "he_scheme": job.he.scheme.value,
            "seed": job.seed,
            "guest": job.guest.name,
            "hosts": [h.name for h in job.hosts],
            "alignment": self.alignment,
            "test": self.outcome.test,
            "train": self.outcome.train,
            "baseline": self.baseline,
        }
        if self.baseline_train is not None:
            out["baseline_train"] = self.baseline_train
        if job.algorithm is VerticalAlgorithm.SECUREBOOST:
            out["params"] = job.secureboost.model_dump()
            out["n_trees"] = self.outcome.n_trees
        else:
            out["params"] = job.hetero_lr.model_dump()
            out["epochs_run"] = len(self.losses)
            out["converged"] = self.outcome.converged
        out.update(self.outcome.history)
        out["model_parts"] = self.outcome.model_parts
        out["wall_time_s"] = self.wall_time_s
        return out

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """metrics.json, report.html (plots inline), report.md (text summary) and (simulation)
        one model part per party under models/."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        if self.model_writers:
            (out / "models").mkdir(exist_ok=True)
        for name, (suffix, write) in self.model_writers.items():
            paths[f"model:{name}"] = write(name, out / "models" / f"{name}{suffix}")
        doc = self.metrics_json()
        paths["metrics_json"] = out / "metrics.json"
        paths["metrics_json"].write_text(json.dumps(doc, indent=2))
        paths["report_html"] = out / "report.html"
        paths["report_html"].write_text(render_report(doc), encoding="utf-8")
        paths["report"] = out / "report.md"
        paths["report"].write_text(self.report())
        return paths

    def table_rows(self) -> list[tuple[str, Mapping[str, float]]]:
        fed, central = model_label(self.job.algorithm)
        rows: list[tuple[str, Mapping[str, float]]] = [(fed, self.outcome.test)]
        if self.baseline is not None:
            rows.append((central, self.baseline))
        return rows

    def report(self) -> str:
        job, a = self.job, self.alignment
        lines = [
            f"# {job.name}: vertical {job.algorithm.value} ({job.he.scheme.value})",
            "",
            f"Guest: {job.guest.name}; hosts: {', '.join(h.name for h in job.hosts)}.",
            f"Aligned customers: {a['aligned']} (train {a['train']}, held out {a['test']}); "
            f"rows per party: {a['local_rows']}.",
            "",
        ]
        h = self.outcome.history
        if job.algorithm is VerticalAlgorithm.SECUREBOOST:
            valid = h.get("valid_loss_per_tree", [])
            lines += [
                "| tree | train log loss | validation log loss | seconds |",
                "|---|---|---|---|",
            ]
            for t, (loss, s) in enumerate(
                zip(h.get("train_loss_per_tree", []), h.get("seconds_per_tree", []), strict=False)
            ):
                v = f"{valid[t]:.6f}" if t < len(valid) else "-"
                lines.append(f"| {t} | {loss:.6f} | {v} | {s:.2f} |")
        else:
            lines += ["| epoch | Taylor loss | seconds |", "|---|---|---|"]
            lines += [
                f"| {e} | {loss:.6f} | {s:.2f} |"
                for e, (loss, s) in enumerate(
                    zip(h.get("loss_per_epoch", []), h.get("seconds_per_epoch", []), strict=True)
                )
            ]
        lines += [
            "",
            "| model (held-out) | " + " | ".join(METRIC_KEYS) + " |",
            "|---" * (len(METRIC_KEYS) + 1) + "|",
        ]
        for name, m in self.table_rows():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in METRIC_KEYS)
                + " |"
            )
        if self.outcome.train is not None:
            lines += ["", f"Training AUC: {self.outcome.train.get('auc', float('nan')):.4f}."]
        lines += ["", "Each party's model part stays with that party (see model_parts)."]
        return "\n".join(lines) + "\n"
