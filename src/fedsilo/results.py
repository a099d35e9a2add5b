"""A finished job: the global model, the metrics of every round, and the files they go to.

``Result.save(out_dir)`` writes:

* ``model.safetensors``: the global parameters; the metadata key ``fedsilo`` holds a
  :class:`~fedsilo.model_file.ModelMeta` (model spec, classes, label, id column, preprocessing
  plan with the schema), so the file alone rebuilds the model and scores new rows
  (:func:`fedsilo.load_model`, ``fedsilo predict``).
* ``metrics.json``: the core every training run shares (:mod:`fedsilo.result_doc`):
  ``job``, ``final.global.<metric>``, ``final.parties.<name>.<metric>``, ``baseline.<metric>``
  (``null`` without a baseline), ``history[i]`` (one per round: ``round``, ``global``,
  ``parties``, ``train_loss``, ``duration_s``, ...); beside it ``data`` (the data summary).
* ``metrics.csv``: one row per round and scope (global, each party, baseline); with DP the
  ``epsilon`` and ``delta`` columns hold the spend after the round (global: max over parties).
* with DP, ``history[i].privacy`` and ``final.privacy``: ``{"level", "epsilon", "delta",
  "parties": {name: {"epsilon", "noise_multiplier", "steps", ...}}}`` (record level; client
  level: the coordinator's one spend and its mechanism, :meth:`ClientDP.record
  <fedsilo.privacy.dp_fedavg.ClientDP.record>`), and ``dp_noise``:
  ``"csprng"``, or ``"reproducible"`` when the simulation-only ``[privacy]
  reproducible_noise`` seeded the noise from the job seed.
* with a privacy audit (``fedsilo privacy audit``), ``privacy_audit``: the membership test
  on the canaries (AUC, TPR at low FPR, epsilon lower bound, accountant's epsilon, scores).
* ``report.html``: self-contained report with plots.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fedsilo import __version__
from fedsilo.config import JobConfig
from fedsilo.model_file import MODEL_FILE, ModelMeta, ModelSpecDoc, write_model
from fedsilo.models import Params, build_model, set_params
from fedsilo.result_doc import core, write_json
from fedsilo.runtime.coordinator import RoundRecord
from fedsilo.runtime.setup import SetupResult

METRIC_COLUMNS = ("loss", "accuracy", "precision", "recall", "f1", "auc")
PRIVACY_COLUMNS = ("epsilon", "delta")


def privacy_cells(privacy: dict[str, Any], party: str | None = None) -> tuple[Any, Any]:
    """(epsilon, delta) CSV cells of a round: the round's maximum, or one party's spend."""
    if not privacy:
        return ("", "")
    spend = privacy if party is None else privacy.get("parties", {}).get(party, {})
    return (spend.get("epsilon", ""), privacy.get("delta", "") if spend else "")


def logreg_importance(
    params: Params, feature_names: list[str], classes: list[str]
) -> dict[str, Any] | None:
    """Standardized coefficients of a ``logreg`` model (its inputs are the standardized,
    one-hot encoded columns of the shared plan): binary, ``w[1] - w[0]`` (the change in the
    log-odds of the second class per standard deviation); multiclass, the mean absolute
    weight over the classes. ``None`` when the weights are not one such layer."""
    weights = [v for k, v in params.items() if k.endswith("weight")]
    if len(weights) != 1 or weights[0].shape != (len(classes), len(feature_names)):
        return None
    w = np.asarray(weights[0], dtype=np.float64)
    coefs = w[1] - w[0] if len(classes) == 2 else np.abs(w).mean(axis=0)
    return {
        "global": {
            "role": "global model",
            "features": len(feature_names),
            "total": {"coefficient": float(np.abs(coefs).sum())},
            "by_feature": {
                n: {"coefficient": float(c)} for n, c in zip(feature_names, coefs, strict=True)
            },
        }
    }


@dataclass
class Result:
    job: JobConfig
    setup: SetupResult
    params: Params
    history: list[RoundRecord]
    baseline: dict[str, float] | None
    wall_time_s: float
    test_examples: int = 0
    privacy_audit: dict[str, Any] | None = None  # set by fedsilo.privacy_audit
    tracking: dict[str, Any] | None = None  # set by fedsilo.tracking: where it was logged
    permutation_importance: dict[str, Any] | None = None  # simulation, models other than logreg

    @property
    def global_evaluation(self) -> str:
        """How the global metrics were measured."""
        if self.test_examples:
            return f"central test split ({self.test_examples:,} rows)"
        return "merged held-out statistics of all parties"

    @property
    def final_global(self) -> dict[str, float]:
        return self.history[-1].global_metrics if self.history else {}

    @property
    def final_parties(self) -> dict[str, dict[str, float]]:
        return self.history[-1].party_metrics if self.history else {}

    def model(self) -> nn.Module:
        """The trained global model as a ready ``torch.nn.Module``."""
        model = build_model(self.setup.model_spec, seed=0)
        set_params(model, self.params)
        return model

    def importance(self) -> dict[str, Any] | None:
        """``logreg``: the standardized coefficients (every party knows the shared columns);
        other tabular models in simulation: permutation importance on the central test split."""
        plan = self.setup.plan
        if self.job.model.name != "logreg" or plan is None:
            return self.permutation_importance
        return logreg_importance(self.params, list(plan.feature_names), list(self.setup.classes))

    def metrics_json(self) -> dict[str, Any]:
        s, job = self.setup, self.job
        out = core(
            job,
            final_global=self.final_global,
            final_parties=self.final_parties,
            baseline=self.baseline,
            history=[r.to_json() for r in self.history],
            wall_time_s=self.wall_time_s,
            tracking=self.tracking,
            importance=self.importance(),
        )
        out["final"]["privacy"] = self.history[-1].privacy if self.history else {}
        out["data"] = {
            "dataset": job.data.dataset or str(job.data.path or "per-party files"),
            "kind": s.kind,
            "features": int(np.prod(s.model_spec.input_shape)),
            "feature_names": list(s.plan.feature_names) if s.plan is not None else None,
            "classes": list(s.classes),
            "test_examples": self.test_examples,
            "global_evaluation": self.global_evaluation,
            "parties": s.summary,
        }
        out["dp_noise"] = "reproducible" if job.privacy.reproducible_noise else "csprng"
        if self.privacy_audit is not None:
            out["privacy_audit"] = self.privacy_audit
        return out

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "model": out / MODEL_FILE,
            "metrics_json": out / "metrics.json",
            "metrics_csv": out / "metrics.csv",
            "report": out / "report.html",
        }
        self.save_model(paths["model"])
        metrics = self.metrics_json()
        write_json(paths["metrics_json"], metrics)
        self._write_csv(paths["metrics_csv"])
        from fedsilo.report import write_report  # matplotlib: only when a report is written

        write_report(metrics, paths["report"])
        return paths

    def save_model(self, path: Path) -> None:
        """``model.safetensors``: the weights with their classes, preprocessing plan, label and
        id column (:mod:`fedsilo.model_file`), so the file alone scores new rows."""
        plan = self.setup.plan
        meta = ModelMeta(
            fedsilo_version=__version__,
            job=self.job.name,
            model_spec=ModelSpecDoc.model_validate(self.setup.model_spec.to_json()),
            classes=list(self.setup.classes),
            label=None if plan is None else plan.schema.label,
            id_column=None if plan is None else self.job.data.id,
            preprocess=None if plan is None else plan.to_json(),
        )
        write_model(path, meta, self.params)

    def _write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["round", "scope", "party", *METRIC_COLUMNS, *PRIVACY_COLUMNS])

            def row(
                rnd: int | str,
                scope: str,
                party: str,
                m: dict[str, float],
                dp: tuple[Any, Any] = ("", ""),
            ) -> None:
                cells = [m.get(c, "") for c in METRIC_COLUMNS]
                writer.writerow([rnd, scope, party, *cells, *dp])

            for r in self.history:
                row(r.round, "global", "", r.global_metrics, privacy_cells(r.privacy))
                for party, m in sorted(r.party_metrics.items()):
                    row(r.round, "party", party, m, privacy_cells(r.privacy, party))
            if self.baseline is not None:
                row("", "baseline", "", self.baseline)
