"""Shared builders: a job over in-memory party frames, and its in-process transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fedsilo.analytics.config import AnalyticsJob, parse_analytics_job
from fedsilo.analytics.local import PartyTable
from fedsilo.analytics.run import simulated_party
from fedsilo.privacy.secagg.identity import simulated_identities
from fedsilo.runtime.transport import InProcessTransport

REGIONS = ["north", "south", "east", "west"]
COLUMNS: dict[str, Any] = {
    "region": {"type": "category", "categories": REGIONS},
    "year": {"type": "category", "categories": [2024, 2025]},
    "amount": {"type": "number", "lower": 0, "upper": 100, "missing": "skip"},
    "score": {"type": "number", "lower": 0, "upper": 100},
}


def make_job(num_parties: int, privacy: dict[str, Any] | None = None, **extra: Any) -> AnalyticsJob:
    """Exact answers (mechanism none) unless ``privacy`` says otherwise; the simulated parties'
    policy then allows exact answers (a party refuses them by default)."""
    privacy = privacy or {"mechanism": "none"}
    exact = privacy.get("mechanism") == "none"
    raw: dict[str, Any] = {
        "table": "t",
        "columns": COLUMNS,
        "parties": [{"name": f"p{i}", "path": f"unused-{i}.csv"} for i in range(num_parties)],
        "privacy": privacy,
        **({"policy": {"allow_exact": True}} if exact else {}),
        **extra,
    }
    return parse_analytics_job(raw, source="test")


def transport_for(
    job: AnalyticsJob, frames: list[pd.DataFrame], ledger_dir: Path | None = None
) -> InProcessTransport:
    """Simulated parties over in-memory frames; ledgers in ``ledger_dir`` (else in memory)."""
    ids = simulated_identities(f"p{i}" for i in range(len(frames)))
    return InProcessTransport(
        {
            f"p{i}": simulated_party(
                f"p{i}", PartyTable(f"frame {i}", frame=f), job, ledger_dir, identity=ids[f"p{i}"]
            )
            for i, f in enumerate(frames)
        }
    )
