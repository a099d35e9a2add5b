"""BatchedTrainer: parties of one exchange meet and train together, whatever the threads do."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fedsilo.models import ModelSpec, build_model, get_params
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.batched import BatchedTrainer
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.training import LocalTrainConfig, TrainResult, train_local
from fedsilo.training.vectorized import PartyBatch, train_together

CFG = LocalTrainConfig(epochs=1, batch_size=4, learning_rate=0.1)


def _rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 2, size=n)


def test_waiting_parties_train_together_once_the_others_have_left() -> None:
    model = build_model(ModelSpec("mlp", (3,), 2, hidden=(4,)), seed=0)
    trainer = BatchedTrainer()
    models = [copy.deepcopy(model) for _ in range(3)]
    data = [_rows(i, 5 + 3 * i) for i in range(3)]
    released = threading.Event()

    with trainer.exchange(4) as left:

        def party(j: int) -> TrainResult | None:
            try:
                if j == 3:  # a party that answers without training (e.g. an error reply)
                    released.wait(timeout=5)
                    return None
                return trainer(models[j], *data[j], CFG, seed=10 + j)
            finally:
                left()

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(party, j) for j in range(4)]
            # nobody trains while the fourth party is still running
            assert not any(f.done() for f in futures[:3])
            released.set()
            got = [f.result(timeout=30) for f in futures]

    expected = [PartyBatch(copy.deepcopy(model), *data[j], seed=10 + j) for j in range(3)]
    results = train_together(expected, CFG)
    assert got[3] is None
    for trained, reference in zip(got[:3], results, strict=True):
        assert trained is not None and trained.params is not None
        assert trained.mean_loss == reference.mean_loss
        assert reference.params is not None and list(trained.params) == list(reference.params)
        for key, value in reference.params.items():
            assert np.array_equal(trained.params[key], value)


def test_outside_an_exchange_a_party_trains_alone_like_train_local() -> None:
    model = build_model(ModelSpec("logreg", (3,), 2), seed=0)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    x, y = _rows(1, 9)
    assert BatchedTrainer()(a, x, y, CFG, seed=4) == train_local(b, x, y, CFG, seed=4)
    assert all(np.array_equal(v, get_params(b)[k]) for k, v in get_params(a).items())


def test_a_failed_batch_fails_every_waiting_party() -> None:
    trainer = BatchedTrainer()
    model = build_model(ModelSpec("logreg", (3,), 2), seed=0)
    bad_labels = np.array([0, 5, 1])  # class 5 of a 2-class model: cross entropy raises
    with trainer.exchange(2) as left:

        def party(j: int) -> None:
            try:
                x, y = _rows(j, 3)
                trainer(copy.deepcopy(model), x, bad_labels if j else y, CFG, seed=j)
            finally:
                left()

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(party, j) for j in range(2)]
            for f in futures:
                with pytest.raises(IndexError):
                    f.result(timeout=30)


class _Echo:
    """A party that answers every task at once, noting which thread ran it."""

    def __init__(self, name: str, threads: list[str]) -> None:
        self.name, self.threads = name, threads

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        self.threads.append(threading.current_thread().name)
        return Message(task.kind, task.job_id, task.round, self.name, {}, {}).encode()


def test_batched_fit_exchanges_reuse_one_pool_of_threads() -> None:
    threads: list[str] = []
    names = [f"p{j}" for j in range(6)]
    transport = InProcessTransport({n: _Echo(n, threads) for n in names}, batched=BatchedTrainer())
    for rnd in range(4):
        task = Message(TaskKind.FIT, "job", rnd, "coordinator", {}, {})
        gathered = transport.exchange(dict.fromkeys(names, task), timeout_s=30)
        assert sorted(gathered.replies) == names
    assert len(threads) == 24
    # ThreadPoolExecutor names its threads "<pool>_<i>": one pool, at most one thread a party
    assert len({t.rsplit("_", 1)[0] for t in threads}) == 1
    assert len(set(threads)) <= len(names)
