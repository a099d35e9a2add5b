"""Shared builders: a job over in-memory party frames, and its in-process transport."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fedsilo.analytics.config import AnalyticsJob, parse_analytics_job
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable
from fedsilo.privacy.secagg.identity import simulated_identities
from fedsilo.runtime.transport import InProcessTransport

REGIONS = ["north", "south", "east", "west"]
COLUMNS: dict[str, Any] = {
    "region": {"type": "category", "categories": REGIONS},
    "year": {"type": "category", "categories": [2024, 2025]},
    "amount": {"type": "number", "lower": 0, "upper": 100},
    "score": {"type": "number", "lower": 0, "upper": 100},
}


def make_job(num_parties: int, privacy: dict[str, Any] | None = None, **extra: Any) -> AnalyticsJob:
    raw: dict[str, Any] = {
        "table": "t",
        "columns": COLUMNS,
        "parties": [{"name": f"p{i}", "path": f"unused-{i}.csv"} for i in range(num_parties)],
        "privacy": privacy or {"mechanism": "none"},
        **extra,
    }
    return parse_analytics_job(raw, source="test")


def transport_for(job: AnalyticsJob, frames: list[pd.DataFrame]) -> InProcessTransport:
    ids = simulated_identities(f"p{i}" for i in range(len(frames)))
    return InProcessTransport(
        {
            f"p{i}": AnalyticsAgent(
                f"p{i}", PartyTable(f"frame {i}", frame=f), job, identity=ids[f"p{i}"]
            )
            for i, f in enumerate(frames)
        }
    )
