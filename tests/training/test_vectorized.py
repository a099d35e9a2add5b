"""Vectorized training equals one-by-one training (train_local) to float32 tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from torch import nn

from fedsilo.models import ModelSpec, build_model, get_params
from fedsilo.training import LocalTrainConfig, train_local
from fedsilo.training.vectorized import (
    PartyBatch,
    chunks,
    linear_layers,
    signature,
    train_together,
)

# float32 matrix products summed in another order: agreement after several epochs
RTOL, ATOL = 1e-4, 1e-5


def _parties(model: nn.Module, sizes: list[int], dim: int, classes: int) -> list[PartyBatch]:
    rng = np.random.default_rng(7)
    return [
        PartyBatch(
            copy.deepcopy(model),
            rng.normal(size=(n, dim)).astype(np.float32),
            rng.integers(0, classes, size=n),
            seed=1000 + j,
        )
        for j, n in enumerate(sizes)
    ]


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("logreg", LocalTrainConfig(epochs=3, batch_size=8, learning_rate=0.1)),
        (
            "mlp",
            LocalTrainConfig(
                epochs=2, batch_size=8, learning_rate=0.05, momentum=0.9, weight_decay=1e-3
            ),
        ),
        ("mlp", LocalTrainConfig(epochs=2, batch_size=16, learning_rate=0.01, optimizer="adam")),
        ("mlp", LocalTrainConfig(epochs=2, batch_size=8, learning_rate=0.05, proximal_mu=0.5)),
    ],
)
def test_train_together_equals_one_by_one(name: str, cfg: LocalTrainConfig) -> None:
    spec = ModelSpec(name=name, input_shape=(6,), num_classes=3, hidden=(5, 4))
    model = build_model(spec, seed=1)
    sizes = [1, 9, 17, 40]  # a single row, short last batches, parties stopping early
    together = _parties(model, sizes, 6, 3)
    alone = _parties(model, sizes, 6, 3)
    start = get_params(model)
    results = train_together(together, cfg)
    for party, other, result in zip(alone, together, results, strict=True):
        expected = train_local(party.model, party.features, party.labels, cfg, seed=party.seed)
        assert result.num_examples == expected.num_examples
        assert result.mean_loss == pytest.approx(expected.mean_loss, rel=RTOL)
        assert result.params is not None
        got, want = result.params, get_params(party.model)
        assert list(got) == list(want)  # the state_dict's names, in its order
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=key)
        # and it trained: every tensor moved away from the start
        assert all(not np.allclose(got[k], start[k]) for k in start)
        # while the model handed in keeps its starting parameters
        assert all(np.array_equal(v, start[k]) for k, v in get_params(other.model).items())


def test_a_party_trains_the_same_whoever_it_trains_with() -> None:
    spec = ModelSpec(name="mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    cfg = LocalTrainConfig(epochs=2, batch_size=4, learning_rate=0.1, momentum=0.5)
    model = build_model(spec, seed=2)
    pair = _parties(model, [7, 30], 4, 2)
    trio = _parties(model, [7, 30, 3], 4, 2)
    for a, b in zip(train_together(pair, cfg), train_together(trio, cfg)[:2], strict=True):
        assert a.params is not None and b.params is not None
        for key, value in a.params.items():
            assert np.array_equal(value, b.params[key]), key


def test_only_linear_relu_stacks_are_vectorizable() -> None:
    mlp = build_model(ModelSpec("mlp", (3,), 2, hidden=(4, 4)), seed=0)
    assert signature(mlp) == ((4, 3), (4, 4), (2, 4))
    cnn = build_model(ModelSpec("cnn", (1, 8, 8), 2), seed=0)
    assert linear_layers(cnn) is None
    assert linear_layers(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))) is None
    assert linear_layers(nn.Sequential(nn.Linear(3, 2, bias=False))) is None
    assert linear_layers(nn.Linear(3, 2)) is None
    with pytest.raises(ValueError, match="one vectorizable architecture"):
        train_together(
            [
                PartyBatch(mlp, np.zeros((2, 3), np.float32), np.zeros(2, np.int64), 0),
                PartyBatch(cnn, np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.int64), 1),
            ],
            LocalTrainConfig(),
        )


def test_chunks_keep_each_stacked_layer_small_and_the_order() -> None:
    def batches(spec: ModelSpec, n: int) -> list[PartyBatch]:
        model = build_model(spec, seed=0)
        rows = np.zeros((1, *spec.input_shape), dtype=np.float32)
        return [PartyBatch(model, rows, np.zeros(1, np.int64), seed=j) for j in range(n)]

    # 128 x (784 + 1) float32 = 402 kB a party: 10 parties under 4 MiB
    mnist = batches(ModelSpec("mlp", (784,), 10, hidden=(128,)), 25)
    cut = chunks(mnist)
    assert [len(c) for c in cut] == [10, 10, 5]
    assert [p.seed for c in cut for p in c] == list(range(25))
    assert [len(c) for c in chunks(batches(ModelSpec("logreg", (30,), 2), 300))] == [300]
    assert chunks([]) == []
