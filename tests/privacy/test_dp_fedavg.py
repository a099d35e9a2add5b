from __future__ import annotations

import math

import numpy as np
import pytest

import fedsilo
from fedsilo.config import ClientDPConfig, ClientDPNoise, parse_job
from fedsilo.privacy.accounting import FixedSizeGaussianSpend, epsilon
from fedsilo.privacy.dp_fedavg import ClientDP, clip_update
from fedsilo.privacy.noise import NoiseSource
from tests.conftest import small_job


def test_clip_update_scales_to_the_norm_and_reports_the_centred_bit() -> None:
    small, bit_small = clip_update(np.array([0.3, 0.4]), 1.0)
    big, bit_big = clip_update(np.array([3.0, 4.0]), 1.0)
    np.testing.assert_allclose(small, [0.3, 0.4])
    np.testing.assert_allclose(big, [0.6, 0.8])
    # centred (b - 1/2): one party moves the bit sum by at most 1/2 (Andrew et al. Thm. 1)
    assert (bit_small, bit_big) == (0.5, -0.5)


def test_adaptive_clipping_moves_the_norm_toward_the_quantile() -> None:
    cfg = ClientDPConfig(enabled=True, adaptive_clipping=True, clip_norm=1.0, target_quantile=0.5)
    dp = ClientDP(cfg, 1e-5, 1, 10)
    noise = NoiseSource.secure()
    dp.config = cfg.model_copy(update={"noise": ClientDPNoise.DISTRIBUTED})  # no noise here
    dp.finish(np.zeros(3), bit_sum=10 * 0.5, m=10, noise=noise)  # all unclipped: shrink
    assert dp.clip_norm == pytest.approx(math.exp(-0.2 * 0.5))
    dp.finish(np.zeros(3), bit_sum=10 * -0.5, m=10, noise=noise)  # all clipped: grow back
    assert dp.clip_norm == pytest.approx(1.0)


def test_coordinator_noise_has_std_z_times_clip_over_m() -> None:
    cfg = ClientDPConfig(enabled=True, noise_multiplier=2.0, clip_norm=0.5)
    dp = ClientDP(cfg, 1e-5, 1, 10)
    mean = dp.finish(np.zeros(200_000), 0.0, m=10, noise=NoiseSource.secure())
    assert mean.std() == pytest.approx(2.0 * 0.5 / 10, rel=0.01)


def _dp_job(
    noise: str, secure: bool, rounds: int = 2, reproducible: bool = False
) -> fedsilo.JobConfig:
    return parse_job(
        small_job(
            rounds=rounds,
            data={"num_parties": 20, "partition": "iid", "min_partition_size": 5},
            selection={"fraction": 0.5, "min_parties": 2},
            privacy={
                "delta": 1e-5,
                "reproducible_noise": reproducible,
                "secure_aggregation": {"enabled": secure},
                "client_dp": {
                    "enabled": True,
                    "noise": noise,
                    "noise_multiplier": 0.5,
                    "clip_norm": 0.5,
                    "adaptive_clipping": True,
                    "clipped_count_stddev": 1.0,
                },
            },
        ),
        source="test",
    )


@pytest.mark.parametrize(("noise", "secure"), [("coordinator", False), ("distributed", True)])
def test_client_dp_rounds_record_the_accountants_epsilon(noise: str, secure: bool) -> None:
    result = fedsilo.simulate(_dp_job(noise, secure))
    spends = [r.privacy for r in result.history]
    assert [s["level"] for s in spends] == ["client", "client"]
    # 10 of 20 parties, fixed size: sampling without replacement, replace-one (sensitivity 2C)
    assert spends[1]["epsilon"] == pytest.approx(
        epsilon(FixedSizeGaussianSpend(0.5 / 2, 10, 20, 2), 1e-5)
    )
    assert spends[0]["epsilon"] < spends[1]["epsilon"]
    assert spends[0]["clip_norm"] == 0.5 and spends[1]["clip_norm"] != 0.5  # adapted
    assert spends[0]["noise"] == noise
    assert len(result.history[0].participants) == 10


def test_coordinator_noise_client_dp_is_reproducible_only_with_the_switch() -> None:
    job = _dp_job("coordinator", False, rounds=1, reproducible=True)  # simulation switch
    a, b = fedsilo.simulate(job), fedsilo.simulate(job)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    # Default: the coordinator's noise comes from its CSPRNG, not from the job seed.
    c = fedsilo.simulate(_dp_job("coordinator", False, rounds=1))
    assert all(not np.array_equal(a.params[n], c.params[n]) for n in a.params)


def test_distributed_noise_with_dropouts_is_accounted_with_the_noise_actually_summed() -> None:
    # 15 of 20 selected parties contributed: the sum carries 15/20 of the noise variance.
    cfg = ClientDPConfig(enabled=True, noise_multiplier=0.8, noise=ClientDPNoise.DISTRIBUTED)
    dp = ClientDP(cfg, 1e-5, 20, 100)
    dp.finish(np.zeros(3), 0.0, m=20, noise=NoiseSource.secure(), contributors=15)
    dp.account_release(20, 20)  # e.g. a rejected attempt whose noisy sum was released
    z_dropped = 0.8 * math.sqrt(15 / 20)
    expected = epsilon(
        [
            FixedSizeGaussianSpend(z_dropped / 2, 20, 100, 1),
            FixedSizeGaussianSpend(0.4, 20, 100, 1),
        ],
        1e-5,
    )
    assert dp.record(1.0)["epsilon"] == pytest.approx(expected)
    assert dp.record(1.0)["epsilon"] > epsilon(FixedSizeGaussianSpend(0.4, 20, 100, 2), 1e-5)
