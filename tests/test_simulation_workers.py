"""How simulated parties run: workers, one torch thread, vectorized training, evaluation cost.

The model of a job does not depend on how many workers run the parties (bit for bit), and
vectorized training equals one-by-one training to float32 tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fedsilo.config import JobConfig
from fedsilo.errors import ConfigError
from fedsilo.models import ModelSpec, build_model
from fedsilo.runtime import batched
from fedsilo.runtime.coordinator import RoundRecord
from fedsilo.simulation import simulate, vectorized
from fedsilo.training import vectorized as vectorized_training
from tests.conftest import small_job

# vectorized vs one-by-one after a few rounds of FedAvg (float32 sums in another order)
RTOL, ATOL = 1e-4, 1e-6


def _job(**simulation: Any) -> dict[str, Any]:
    return small_job(
        rounds=2,
        data={"num_parties": 9},
        model={"name": "mlp", "hidden": [8]},
        training={"momentum": 0.5},
        simulation=simulation,
    )


def _params(**simulation: Any) -> dict[str, np.ndarray]:
    return simulate(_job(**simulation)).params


def test_the_model_does_not_depend_on_the_number_of_workers() -> None:
    one = _params(workers=1, vectorize="off")
    three = _params(workers=3, vectorize="off")
    assert all(np.array_equal(one[k], three[k]) for k in one)
    together_one = _params(workers=1, vectorize="on")
    together_three = _params(workers=3, vectorize="on")
    assert all(np.array_equal(together_one[k], together_three[k]) for k in one)
    for k in one:  # vectorized training: the same model to float tolerance
        np.testing.assert_allclose(together_one[k], one[k], rtol=RTOL, atol=ATOL, err_msg=k)


def test_training_in_chunks_gives_the_model_of_one_batch_whatever_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_batch = _params(workers=1, vectorize="on")
    # a chunk per 2 parties: 5 chunks a round
    # (breast-cancer: 30 features; float32 weights and biases of the first layer)
    monkeypatch.setattr(vectorized_training, "CHUNK_BYTES", 2 * 4 * 8 * (30 + 1))
    assert [len(c) for c in vectorized_training.chunks(_batches(5))] == [2, 2, 1]
    seen: set[tuple[int, int]] = set()  # (parties, torch threads) of every chunk trained
    train = batched.train_together

    def spy(parties: Any, cfg: Any) -> Any:
        seen.add((len(parties), torch.get_num_threads()))
        return train(parties, cfg)

    monkeypatch.setattr(batched, "train_together", spy)
    for workers in (1, 3):
        chunked = _params(workers=workers, vectorize="on")
        assert all(np.array_equal(chunked[k], one_batch[k]) for k in one_batch), workers
    assert seen == {(2, 1), (1, 1)}  # chunks of the 9 parties, one torch thread each


def _batches(n: int) -> list[vectorized_training.PartyBatch]:
    model = build_model(ModelSpec("mlp", (30,), 2, hidden=(8,)), seed=0)
    rows = np.zeros((3, 30), dtype=np.float32)
    return [vectorized_training.PartyBatch(model, rows, np.zeros(3, np.int64), j) for j in range(n)]


def test_auto_vectorizes_logreg_and_mlp_from_eight_parties_per_round() -> None:
    def decide(parties: int, **overrides: Any) -> bool:
        return vectorized(JobConfig.model_validate(small_job(**overrides)), parties)

    assert decide(8) and decide(16, model={"name": "mlp"})
    assert not decide(7)
    assert not decide(16, selection={"fraction": 0.25})  # 4 per round
    assert not decide(16, model={"name": "cnn"})
    assert not decide(16, simulation={"vectorize": "off"})
    assert decide(3, simulation={"vectorize": "on"})
    dp = {"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplier": 1.0}}
    assert not decide(16, privacy=dp)  # DP-SGD parties train one by one


def test_parties_train_with_one_torch_thread_and_the_setting_is_restored() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    def on_round(record: RoundRecord) -> None:
        seen.append(torch.get_num_threads())

    from fedsilo.simulation import Progress

    simulate(small_job(rounds=2), progress=Progress(on_round=on_round))
    assert seen == [1, 1]
    assert torch.get_num_threads() == before


def test_vectorize_on_refuses_what_it_cannot_train() -> None:
    with pytest.raises(ConfigError, match="DP-SGD clips every example"):
        simulate(
            small_job(
                simulation={"vectorize": "on"},
                privacy={"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplier": 1.0}},
            )
        )
    with pytest.raises(ConfigError, match="logreg and mlp models only, not 'cnn'"):
        simulate(small_job(simulation={"vectorize": "on"}, model={"name": "cnn"}))


def test_parties_evaluate_every_n_rounds_only_when_sampled_and_all_at_the_end() -> None:
    job = small_job(
        rounds=5,
        data={"num_parties": 4},
        selection={"fraction": 0.5, "min_parties": 2},
        evaluation={"every": 2},
    )
    result = simulate(job)
    history = result.history
    for record in history:
        assert record.global_metrics["accuracy"] > 0  # the central test split: every round
    assert history[0].party_metrics == {} and history[2].party_metrics == {}
    for record in (history[1], history[3]):
        assert sorted(record.party_metrics) == sorted(record.participants)
        assert len(record.participants) == 2
    assert sorted(history[4].party_metrics) == ["party-1", "party-2", "party-3", "party-4"]
    assert sorted(result.final_parties) == ["party-1", "party-2", "party-3", "party-4"]
