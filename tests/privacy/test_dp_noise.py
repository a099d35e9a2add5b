"""DP noise comes from the party's CSPRNG: the coordinator cannot regenerate and subtract it.

The attacker is the coordinator. It knows everything it sent or saw: the job seed, the fit
seed of the round, the global parameters, the training config, the party's row count and the
released update. With noise derived from any of those it recovers the party's exact
clipped-gradient sum (the control below, with the simulation switch on, shows the attack
works); with the default CSPRNG its best reconstruction is off by the noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedsilo.errors import ConfigError
from fedsilo.models import ModelSpec, build_model, get_params
from fedsilo.privacy.dp_sgd import train_local_dp
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.noise import NoiseSource
from fedsilo.runtime.seeds import derive_seed
from fedsilo.training import LocalTrainConfig

JOB_SEED, ROUND, PARTY_INDEX = 11, 3, 1
FIT_SEED = derive_seed(JOB_SEED, "fit", ROUND, PARTY_INDEX)  # what the coordinator sends
ROWS, CLIP, SIGMA, LR = 20, 1.0, 1.0, 1.0
SPEC = ModelSpec("logreg", (3,), 2)
PROPOSAL = {
    "noise_multiplier": SIGMA,
    "target_epsilon": None,
    "max_grad_norm": CLIP,
    "accounting": "rdp",
    "delta": 1e-5,
    "rounds": 5,
    "batch_size": ROWS,
    "epochs": 1,
}
CFG = LocalTrainConfig(epochs=1, batch_size=ROWS, learning_rate=LR)  # q = 1: one full step


def _party_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)  # the party's private rows
    return (3 * rng.normal(size=(ROWS, 3))).astype(np.float32), rng.integers(0, 2, ROWS)


def _true_clipped_sum(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What DP-SGD's noise hides: sum over rows of each gradient clipped to CLIP (by hand)."""
    x, y = _party_data()
    model = build_model(SPEC, seed=0)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    total = {k: np.zeros_like(v) for k, v in params.items()}
    for i in range(ROWS):
        model.zero_grad()
        loss = nn.functional.cross_entropy(
            model(torch.from_numpy(x[i : i + 1])), torch.tensor([y[i]])
        )
        loss.backward()
        grads = {k: p.grad.detach().numpy().astype(np.float64) for k, p in model.named_parameters()}
        norm = np.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        for k, g in grads.items():
            total[k] += g * min(1.0, CLIP / norm)
    return total


def _party_fit(guard: PrivacyGuard, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The party's real fit path: its guard picks the noise source, DP-SGD trains."""
    model = build_model(SPEC, seed=0)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    dp = guard.before_fit(ROUND, CFG)
    assert dp is not None
    x, y = _party_data()
    train_local_dp(model, x, y, CFG, dp, noise=guard.noise_source(FIT_SEED, "dp-sgd"))
    return get_params(model)


def _guard(allow_reproducible: bool, reproducible: bool) -> PrivacyGuard:
    guard = PrivacyGuard("clinic-a", PartyPrivacy(allow_reproducible_noise=allow_reproducible))
    guard.configure(PROPOSAL, ROWS, reproducible_noise=reproducible)
    return guard


def _regenerated_noise(source: NoiseSource, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The attacker replays the party's draws: ROWS sampling coins, then one Gaussian per
    parameter tensor in the model's order."""
    source.bernoulli(1.0, ROWS)
    return {k: source.normal(SIGMA * CLIP, v.shape) for k, v in params.items()}


def _torch_seeded_noise(seed: int, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The attack of issue 11 against the old code: torch generators seeded from the fit seed."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "dp-noise"))
    out = {}
    for k, v in params.items():
        out[k] = torch.normal(0.0, SIGMA * CLIP, v.shape, generator=gen).numpy().astype(np.float64)
    return out


def _recovery_error(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], noise: dict[str, np.ndarray]
) -> float:
    """|| (recovered sum) - (true clipped sum) ||: update = -LR (sum + noise) / ROWS."""
    truth = _true_clipped_sum(before)
    err = 0.0
    for k in before:
        released = (after[k].astype(np.float64) - before[k]) * (-ROWS / LR)
        err += float(((released - noise[k] - truth[k]) ** 2).sum())
    return float(np.sqrt(err))


def test_control_seeded_noise_lets_the_coordinator_recover_the_clipped_sum() -> None:
    # The simulation switch (a party whose own settings allow it): the attack must work.
    before = get_params(build_model(SPEC, seed=JOB_SEED))
    after = _party_fit(_guard(allow_reproducible=True, reproducible=True), before)
    guess = _regenerated_noise(NoiseSource.reproducible(FIT_SEED, "dp-sgd"), before)
    assert _recovery_error(before, after, guess) < 1e-3


def test_coordinator_cannot_regenerate_a_partys_dp_sgd_noise() -> None:
    before = get_params(build_model(SPEC, seed=JOB_SEED))
    after = _party_fit(_guard(allow_reproducible=False, reproducible=False), before)
    noise_norm = SIGMA * CLIP * np.sqrt(sum(v.size for v in before.values()))
    guesses = {
        "fit seed, fedsilo's reproducible stream": _regenerated_noise(
            NoiseSource.reproducible(FIT_SEED, "dp-sgd"), before
        ),
        "job seed, fedsilo's reproducible stream": _regenerated_noise(
            NoiseSource.reproducible(JOB_SEED, "dp-sgd"), before
        ),
        "fit seed, torch generator (the old derivation)": _torch_seeded_noise(FIT_SEED, before),
        "no noise at all": {k: np.zeros_like(v) for k, v in before.items()},
    }
    for attack, guess in guesses.items():
        # Off by about the noise itself (norm ~ sigma C sqrt(d) = 2.8), never near exact.
        assert _recovery_error(before, after, guess) > 0.25 * noise_norm, attack


def test_a_party_refuses_reproducible_noise_unless_its_own_settings_allow_it() -> None:
    guard = PrivacyGuard("clinic-a", PartyPrivacy())  # a deployed party's settings
    with pytest.raises(ConfigError, match=r"party 'clinic-a' refuses the job.*reproducible"):
        guard.configure(PROPOSAL, ROWS, reproducible_noise=True)
    # Without the request it runs, on the CSPRNG.
    guard.configure(PROPOSAL, ROWS)
    assert guard.noise_source(FIT_SEED, "dp-sgd").reproducible_seed is None


def test_noise_source_draws_are_gaussian_and_uniform() -> None:
    source = NoiseSource.secure()
    normal = source.normal(2.0, 400_000)
    assert abs(normal.mean()) < 0.02 and normal.std() == pytest.approx(2.0, rel=0.01)
    coins = source.bernoulli(0.25, 400_000)
    assert coins.mean() == pytest.approx(0.25, abs=0.005)
    a, b = NoiseSource.secure().normal(1.0, 8), NoiseSource.secure().normal(1.0, 8)
    assert not np.array_equal(a, b)
