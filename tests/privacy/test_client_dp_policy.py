"""A party checks the client-DP parameters the coordinator sends against its own policy.

The coordinator plays the adversary against the real party code (simulated parties over the
in-process transport, real secure aggregation): it lowers every party's noise share, raises
the clip norm, or leaves all of the noise to itself. Each party refuses before it trains,
naming the field and both values, and nothing masked leaves it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from fedsilo.config import ClientDPConfig, JobConfig, parse_job
from fedsilo.deploy.config import PartyProcessConfig
from fedsilo.errors import RefusedError, RoundFailedError
from fedsilo.privacy.dp_fedavg import ClientDP, ClientDPNoise, ClientDPPolicy
from fedsilo.privacy.noise import NoiseSource
from fedsilo.protocol.bodies import PrivateOptions
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.private_party import private_vector
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.simulation import load_simulated_data, simulated_agents, simulated_party_identities
from tests.conftest import small_job

PARTIES = 4


def _job(**client_dp: Any) -> JobConfig:
    dp = {"enabled": True, "noise": "distributed", "noise_multiplier": 0.8, "clip_norm": 0.5}
    raw = small_job(
        rounds=1,
        data={"num_parties": PARTIES, "partition": "iid"},
        selection={"min_parties": PARTIES, "max_round_retries": 0},
        privacy={
            "delta": 1e-5,
            "secure_aggregation": {"enabled": True},
            "client_dp": dp | client_dp,
        },
    )
    return parse_job(raw, source="test")


class Tampering:
    """The coordinator's transport, rewriting the client-DP options of every FIT task."""

    def __init__(self, job: JobConfig, tamper: Callable[[dict[str, Any]], None]) -> None:
        sim = load_simulated_data(job)  # each party with the job's stand-in for its own config
        ids = simulated_party_identities(job, sim.parties)
        self.inner = InProcessTransport(simulated_agents(job, sim, ids, None))
        self.tamper = tamper
        self.fit_replies: dict[str, Message] = {}

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        changed = {}
        for party, task in tasks.items():
            if task.kind is TaskKind.FIT:
                body = copy.deepcopy(task.body)
                self.tamper(body["private"]["client_dp"])
                task = Message(task.kind, task.job_id, task.round, task.sender, body, task.arrays)
            changed[party] = task
        out = self.inner.exchange(changed, timeout_s=timeout_s)
        if any(t.kind is TaskKind.FIT for t in tasks.values()):
            self.fit_replies = dict(out.replies)
        return out


def _run_refused(job: JobConfig, tamper: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    transport = Tampering(job, tamper)
    with pytest.raises(RoundFailedError):
        Coordinator(job, transport).run()
    assert sorted(transport.fit_replies) == transport.party_names()
    errors = {}
    for party, reply in transport.fit_replies.items():
        assert reply.error is not None and "masked" not in reply.arrays  # nothing left it
        assert reply.error_code is RefusedError.code
        errors[party] = reply.error
    return errors


def test_the_honest_task_passes_every_partys_check() -> None:
    job = _job(adaptive_clipping=True)
    transport = Tampering(job, lambda dp: None)
    outcome = Coordinator(job, transport).run()
    assert outcome.history[0].participants == transport.party_names()


def test_a_reduced_noise_share_is_refused_by_every_party() -> None:
    shares: list[float] = []

    def halve(dp: dict[str, Any]) -> None:
        dp["noise_std"] /= 2
        shares.append(dp["noise_std"])

    errors = _run_refused(_job(), halve)
    for party, error in errors.items():
        assert f"party '{party}' round 1 refuses the client-DP task" in error
        assert f"field 'private.client_dp.noise_std' is {shares[0]:.6g}" in error
        # z C / sqrt(m) halved: the sum would get noise multiplier 0.4, below the party's 0.8
        assert "noise multiplier 0.4, below its min_noise_multiplier 0.8" in error


def test_a_reduced_clipped_count_noise_is_refused() -> None:
    def shrink(dp: dict[str, Any]) -> None:
        dp["bit_noise_std"] /= 100  # the clipped-count bits summed with almost no noise

    errors = _run_refused(_job(adaptive_clipping=True), shrink)
    for error in errors.values():
        assert "field 'private.client_dp.noise_std'" in error and "(bit_noise_std " in error
        assert "below its min_noise_multiplier 0.8" in error


def test_a_larger_clip_norm_is_refused_naming_both_values() -> None:
    errors = _run_refused(_job(), lambda dp: dp.update(clip_norm=5.0))
    for error in errors.values():
        assert "field 'private.client_dp.clip_norm' is 5, above its max_clip_norm 0.5" in error


def test_leaving_all_noise_to_the_coordinator_is_refused() -> None:
    errors = _run_refused(_job(), lambda dp: dp.update(noise_std=0.0, bit_noise_std=0.0))
    for error in errors.values():
        assert "field 'private.client_dp.noise_std' is 0" in error
        assert "trust_coordinator_noise is false" in error


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("m", [3, 20, 100])
def test_the_coordinators_own_party_task_meets_the_jobs_policy_and_less_noise_does_not(
    adaptive: bool, m: int
) -> None:
    config = ClientDPConfig(
        enabled=True,
        noise_multiplier=1.3,
        clip_norm=0.7,
        noise=ClientDPNoise.DISTRIBUTED,
        adaptive_clipping=adaptive,
    )
    policy = ClientDPPolicy.of_job(config)
    task = ClientDP(config, 1e-5, m, 200).party_task(m)
    policy.check(**task, parties=m, where="party 'p'")  # accepted as sent
    with pytest.raises(RefusedError, match=r"below its min_noise_multiplier 1\.3"):
        policy.check(**task | {"noise_std": task["noise_std"] * 0.99}, parties=m, where="p")
    with pytest.raises(RefusedError, match=r"below its min_noise_multiplier 1\.3"):
        policy.check(**task, parties=m - 1, where="p")  # fewer parties: fewer shares summed


def test_a_noise_share_without_secure_aggregation_is_refused() -> None:
    policy = ClientDPPolicy(min_noise_multiplier=1.0)
    with pytest.raises(RefusedError, match="without secure aggregation"):
        policy.check(clip_norm=1.0, noise_std=1.0, bit_noise_std=0.0, parties=None, where="p")


def test_a_party_that_trusts_the_coordinator_accepts_coordinator_noise() -> None:
    policy = ClientDPPolicy(trust_coordinator_noise=True)
    policy.check(clip_norm=1.0, noise_std=0.0, bit_noise_std=0.0, parties=None, where="p")


def test_a_deployed_partys_policy_comes_from_its_own_config() -> None:
    raw = {
        "name": "bank-a",
        "server": "127.0.0.1:1",
        "data": "bank_a.csv",
        "privacy": {"client_dp": {"min_noise_multiplier": 2.0, "max_clip_norm": 0.25}},
    }
    policy = PartyProcessConfig.model_validate(raw).privacy.client_dp
    assert policy == ClientDPPolicy(min_noise_multiplier=2.0, max_clip_norm=0.25)
    default = PartyProcessConfig.model_validate(raw | {"privacy": {}}).privacy.client_dp
    assert default.min_noise_multiplier == 1.0 and not default.trust_coordinator_noise


def test_fixed_clipping_with_distributed_noise_sends_no_exact_clipped_bit() -> None:
    update = np.full(4, 10.0)  # norm 20: clipped, bit -1/2
    options = PrivateOptions.model_validate(
        {"client_dp": {"clip_norm": 1.0, "noise_std": 0.1, "bit_noise_std": 0.0}}
    )
    vector = private_vector(update, 8, 0.3, options, NoiseSource.secure())
    assert vector[-3] == 0.0  # no noise for the bit, so no bit
    assert vector[-2] == 1.0 and vector[-1] == 0.3  # weight 1, the loss
