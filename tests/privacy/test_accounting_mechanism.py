"""Every reported epsilon equals dp-accounting's for the mechanism as it actually ran.

The tests spy on the code that adds noise and samples (the stds actually drawn, the clip
norms and bits actually used, the sampling rates and step counts actually run) and hand
those, not the config, to ``dp_accounting`` directly.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

import fedsilo
from fedsilo.config import load_job
from fedsilo.privacy import dp_sgd, guard
from fedsilo.privacy.noise import NoiseSource
from fedsilo.runtime import private_party
from tests.conftest import small_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "client_dp.toml"


def test_client_dp_example_epsilon_equals_dp_accounting_for_the_mechanism_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = load_job(EXAMPLE).model_copy(update={"rounds": 2})
    fits: list[dict[str, Any]] = []  # one entry per party fit, round by round
    clip, normal = private_party.clip_update, NoiseSource.normal
    current = threading.local()  # parties of a round fit in parallel worker threads

    def spy_clip(update: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
        clipped, bit = clip(update, clip_norm)
        current.fit = {"clip": clip_norm, "bit": bit, "stds": []}
        fits.append(current.fit)
        return clipped, bit

    def spy_normal(self: NoiseSource, std: float, shape: Any) -> np.ndarray:
        fit = getattr(current, "fit", None)
        if fit is not None:
            fit["stds"].append(std)
        return normal(self, std, shape)

    monkeypatch.setattr(private_party, "clip_update", spy_clip)
    monkeypatch.setattr(NoiseSource, "normal", spy_normal)
    result = fedsilo.simulate(job)

    population = job.data.num_parties
    accountant = rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    start = 0
    for record in result.history:
        m = len(record.participants)  # no dropouts in simulation: everyone selected sent
        assert m == 20 and record.attempts == 1
        round_fits = fits[start : start + m]
        start += m
        assert {f["bit"] for f in round_fits} <= {-0.5, 0.5}  # centred: |b| = 1/2
        clip_norm = round_fits[0]["clip"]
        assert all(f["clip"] == clip_norm for f in round_fits)
        update_std = math.sqrt(sum(f["stds"][0] ** 2 for f in round_fits))  # noise in the sum
        bit_std = math.sqrt(sum(f["stds"][1] ** 2 for f in round_fits))
        # Replace one party: the clipped sum moves by <= 2 C, the centred bit sum by <= 1.
        z = 1 / math.sqrt((2 * clip_norm / update_std) ** 2 + (1 / bit_std) ** 2)
        event = dp_accounting.GaussianDpEvent(z)
        accountant.compose(dp_accounting.SampledWithoutReplacementDpEvent(population, m, event))
        expected = accountant.get_epsilon(job.privacy.delta)
        assert record.privacy["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert start == len(fits)


def test_record_dp_epsilon_equals_dp_accounting_for_the_steps_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = small_job(
        rounds=2,
        training={"batch_size": 16, "epochs": 2},
        privacy={
            "delta": 1e-5,
            "record_dp": {"enabled": True, "noise_multiplier": 1.3, "max_grad_norm": 0.7},
        },
    )
    rates: dict[str, list[float]] = defaultdict(list)  # party -> sampling rate of each step
    stds: dict[str, list[float]] = defaultdict(list)  # party -> noise std of each tensor drawn
    current = threading.local()  # parties fit in parallel worker threads
    source, batches = guard.PrivacyGuard.noise_source, dp_sgd.poisson_batches
    like = NoiseSource.normal_like

    def spy_source(self: guard.PrivacyGuard, fit_seed: int, purpose: str) -> NoiseSource:
        current.party = self.party
        return source(self, fit_seed, purpose)

    def spy_batches(rows: int, q: float, noise: NoiseSource) -> list[Any]:
        out = batches(rows, q, noise)
        rates[current.party].extend(q for _ in out)
        return out

    def spy_like(self: NoiseSource, std: float, reference: Any) -> Any:
        stds[current.party].append(std)
        return like(self, std, reference)

    monkeypatch.setattr(guard.PrivacyGuard, "noise_source", spy_source)
    monkeypatch.setattr(dp_sgd, "poisson_batches", spy_batches)
    monkeypatch.setattr(NoiseSource, "normal_like", spy_like)
    result = fedsilo.simulate(job)

    reported = result.history[-1].privacy["parties"]
    assert set(reported) == set(rates)
    for name, steps in rates.items():
        assert len(stds[name]) == 2 * len(steps)  # logreg: weight and bias, once per step
        accountant = rdp.RdpAccountant()
        run = Counter(zip(steps, stds[name][::2], strict=True))  # (q, std) -> steps
        for (q, std), count in run.items():
            gaussian = dp_accounting.GaussianDpEvent(std / 0.7)  # std / max_grad_norm
            sampled = dp_accounting.PoissonSampledDpEvent(q, gaussian)
            accountant.compose(dp_accounting.SelfComposedDpEvent(sampled, count))
        assert reported[name]["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
