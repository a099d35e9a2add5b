"""Run a vertical job with every party in this process: PSI, training, held-out metrics.

``simulate_vertical(job)`` aligns the parties' rows (PSI), then dispatches on
``job.algorithm``; hetero LR runs through :class:`~fedsilo.runtime.transport.InProcessTransport`
so every message is encoded exactly as over the network. ``--baseline`` additionally trains
scikit-learn's ``LogisticRegression`` on the joined aligned rows (simulation only: no real
deployment has the joined table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsilo.errors import ConfigError
from fedsilo.privacy.he import SecretContext, generate
from fedsilo.runtime.transport import Handler, InProcessTransport, Transport
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig
from fedsilo.vertical.data import AlignedData, load_aligned
from fedsilo.vertical.hetero_lr import HeteroLrArbiter, HeteroLrParty
from fedsilo.vertical.metrics import binary_metrics

EpochCallback = Callable[[int, float, float], None]


@dataclass
class VerticalResult:
    job: VerticalJobConfig
    metrics: dict[str, float]
    losses: list[float]
    epoch_seconds: list[float]
    converged: bool
    alignment: dict[str, Any]
    parties: dict[str, HeteroLrParty] = field(repr=False)
    baseline: dict[str, float] | None = None
    wall_time_s: float = 0.0

    def metrics_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job": self.job.name,
            "kind": "vertical",
            "algorithm": self.job.algorithm.value,
            "he_scheme": self.job.he.scheme.value,
            "alignment": self.alignment,
            "epochs_run": len(self.losses),
            "converged": self.converged,
            "loss_per_epoch": self.losses,
            "seconds_per_epoch": self.epoch_seconds,
            "test": self.metrics,
            "wall_time_s": self.wall_time_s,
        }
        if self.baseline is not None:
            out["baseline"] = self.baseline
        return out

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write one model part per party, metrics.json and report.md into ``out_dir``."""
        out = Path(out_dir)
        (out / "models").mkdir(parents=True, exist_ok=True)
        paths = {
            f"model:{n}": p.save(out / "models" / f"{n}.safetensors")
            for n, p in self.parties.items()
        }
        paths["metrics_json"] = out / "metrics.json"
        paths["metrics_json"].write_text(json.dumps(self.metrics_json(), indent=2))
        paths["report"] = out / "report.md"
        paths["report"].write_text(self.report())
        return paths

    def report(self) -> str:
        job = self.job
        lines = [
            f"# {job.name}: vertical {job.algorithm.value} ({job.he.scheme.value})",
            "",
            f"Guest: {job.guest.name}; hosts: {', '.join(h.name for h in job.hosts)}.",
            f"Aligned customers: {self.alignment['aligned']} (train {self.alignment['train']}, "
            f"held out {self.alignment['test']}); rows per party: {self.alignment['local_rows']}.",
            "",
            "| epoch | Taylor loss | seconds |",
            "|---|---|---|",
        ]
        lines += [
            f"| {e} | {loss:.6f} | {s:.2f} |"
            for e, (loss, s) in enumerate(zip(self.losses, self.epoch_seconds, strict=True))
        ]
        lines += [
            "",
            "| model | " + " | ".join(_METRICS) + " |",
            "|---" * (len(_METRICS) + 1) + "|",
        ]
        rows = [("hetero LR", self.metrics)]
        if self.baseline is not None:
            rows.append(("centralized LR (baseline)", self.baseline))
        for name, m in rows:
            lines.append(
                f"| {name} | "
                + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in _METRICS)
                + " |"
            )
        lines += ["", "Each party's weights stay in its own file under models/."]
        return "\n".join(lines) + "\n"


_METRICS = ("auc", "ks", "accuracy", "f1")


def build_parties(data: AlignedData, job: VerticalJobConfig) -> dict[str, HeteroLrParty]:
    return {
        name: HeteroLrParty(name, t.features, t.labels, t.feature_names)
        for name, t in data.parties.items()
    }


def run_hetero_lr(
    job: VerticalJobConfig,
    data: AlignedData,
    parties: Mapping[str, Handler],
    *,
    transport: Transport | None = None,
    secret: SecretContext | None = None,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[float], list[float], bool, dict[str, float]]:
    """Train and evaluate; returns (losses, seconds per epoch, converged, test metrics)."""
    secret = secret or generate(job.he.scheme, job.he.backend_config())
    arbiter = HeteroLrArbiter(
        job.name,
        transport or InProcessTransport(parties),
        secret,
        guest=job.guest.name,
        hosts=[h.name for h in job.hosts],
        params=job.hetero_lr.params(),
        seed=job.seed,
        on_epoch=on_epoch,
    )
    arbiter.setup(data.train, data.test)
    outcome = arbiter.train()
    return outcome.losses, outcome.epoch_seconds, outcome.converged, arbiter.predict()


def centralized_baseline(job: VerticalJobConfig, data: AlignedData) -> dict[str, float]:
    """scikit-learn LogisticRegression on the joined aligned rows, same standardization/L2."""
    from sklearn.linear_model import LogisticRegression

    x = np.hstack([data.parties[p.name].features for p in job.parties])
    labels = data.parties[job.guest.name].labels
    assert labels is not None
    train, test = data.train, data.test
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    xs = (x - mean) / std
    l2 = job.hetero_lr.l2
    c = 1.0 / (l2 * len(train)) if l2 > 0 else 1e6
    model = LogisticRegression(C=c, max_iter=2000).fit(xs[train], labels[train])
    return binary_metrics(labels[test], model.predict_proba(xs[test])[:, 1])


def simulate_vertical(
    job: VerticalJobConfig, *, baseline: bool = False, on_epoch: EpochCallback | None = None
) -> VerticalResult:
    started = time.monotonic()
    if job.algorithm is not VerticalAlgorithm.HETERO_LR:
        # Dispatch point: SecureBoost lives in fedsilo.vertical.secureboost (another branch).
        raise ConfigError(
            f"algorithm {job.algorithm.value!r} is not available in this build; use 'hetero_lr'"
        )
    data = load_aligned(job)
    parties = build_parties(data, job)
    losses, seconds, converged, metrics = run_hetero_lr(job, data, parties, on_epoch=on_epoch)
    alignment = {
        "aligned": data.num_aligned,
        "train": len(data.train),
        "test": len(data.test),
        "local_rows": data.local_rows,
    }
    return VerticalResult(
        job,
        metrics,
        losses,
        seconds,
        converged,
        alignment,
        parties,
        centralized_baseline(job, data) if baseline else None,
        time.monotonic() - started,
    )
