"""A party reads its table with the agreed schema once: statistics and setup share it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import fedsilo.runtime.party as party_module
from fedsilo.config import parse_job
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.setup import prepare_parties
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import load_simulated_data
from tests.conftest import small_job


def test_each_party_reads_its_table_with_the_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    job = parse_job(small_job(), source="test")
    data = load_simulated_data(job)
    agents = {p: PartyAgent(p, d) for p, d in data.parties.items()}
    assert all(d.table is not None for d in data.parties.values())
    reads: list[str] = []
    real = party_module.read_typed

    def counting(df: pd.DataFrame, *args: Any, party: str, **kwargs: Any) -> pd.DataFrame:
        reads.append(party)
        return real(df, *args, party=party, **kwargs)

    monkeypatch.setattr(party_module, "read_typed", counting)

    setup = prepare_parties(InProcessTransport(agents), job)

    assert sorted(reads) == sorted(setup.parties)  # statistics and setup: one read each
    for agent in agents.values():
        assert agent._typed is None  # the typed copy is not kept after setup
