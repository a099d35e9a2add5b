"""A malicious party against the real round loop: every forged reply is refused like a lost one.

party-2 runs the real PartyAgent; a wrapper rewrites its encoded reply (bytes crafted by hand,
so NaN and infinity reach the wire the way a hostile process would send them). Each forgery
is rejected with a logged reason naming the party, the round and the field, and the job ends
exactly as if party-2's reply had been lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fedsilo.config import parse_job
from fedsilo.models import flatten
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator, TrainingOutcome
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import load_simulated_data
from tests.conftest import small_job
from tests.forgery import raw

Forgery = Callable[[dict[str, Any], dict[str, np.ndarray]], int | None]  # may return a round


class Forging:
    """The real agent; its replies of one kind rewritten by ``forge`` (or dropped)."""

    def __init__(self, agent: PartyAgent, kind: TaskKind, forge: Forgery | None) -> None:
        self.agent, self.kind, self.forge = agent, kind, forge

    def handle(self, data: bytes) -> bytes:
        reply = self.agent.handle(data)
        msg = Message.decode(reply)
        if msg.kind is not self.kind:
            return reply
        if self.forge is None:
            raise ConnectionError("reply lost")
        body, arrays = json.loads(json.dumps(msg.body)), dict(msg.arrays)
        rnd = self.forge(body, arrays)
        return raw(msg, body, arrays, msg.round if rnd is None else rnd)


def run(kind: TaskKind, forge: Forgery | None, *, rounds: int = 2, **job: Any) -> TrainingOutcome:
    cfg = parse_job(small_job(rounds=rounds, **job), source="test")
    sim = load_simulated_data(cfg)
    agents: dict[str, Any] = {n: PartyAgent(n, d) for n, d in sim.parties.items()}
    agents["party-2"] = Forging(agents["party-2"], kind, forge)
    return Coordinator(cfg, InProcessTransport(agents)).run()


def first_param(arrays: dict[str, np.ndarray]) -> str:
    return next(iter(arrays))


def setitem(path: str, value: Any) -> Forgery:
    """Set ``body[a][b]...`` to ``value``."""

    def forge(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        target[last] = value

    return forge


def reshape(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    name = first_param(arrays)
    arrays[name] = np.zeros((1, 1), dtype=arrays[name].dtype)


def retype(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    name = first_param(arrays)
    arrays[name] = arrays[name].astype(np.float64)


FIT_FORGERIES: dict[str, tuple[Forgery, str]] = {
    "nan loss": (setitem("train_loss", float("nan")), "field 'train_loss' is NaN"),
    "infinite loss": (setitem("train_loss", float("inf")), "field 'train_loss' is NaN"),
    "negative loss": (setitem("train_loss", -0.5), "train_loss"),
    "negative count": (setitem("num_examples", -40), "num_examples"),
    "oversized count": (setitem("num_examples", 10**9), "num_examples"),
    "unknown field": (setitem("weight", 1e6), "weight"),
    "wrong shape": (reshape, "has shape (1, 1)"),
    "wrong dtype": (retype, "has dtype float64"),
    "another round": (lambda body, arrays: 99, "field 'round' is 99"),
}


@pytest.fixture(scope="module")
def fit_lost() -> TrainingOutcome:
    return run(TaskKind.FIT, None, rounds=3)


@pytest.mark.parametrize("case", sorted(FIT_FORGERIES))
def test_a_forged_fit_reply_is_refused_like_a_lost_one(
    case: str, fit_lost: TrainingOutcome, caplog: pytest.LogCaptureFixture
) -> None:
    forge, field = FIT_FORGERIES[case]
    with caplog.at_level(logging.WARNING, logger="fedsilo.runtime"):
        outcome = run(TaskKind.FIT, forge, rounds=3)
    for record in outcome.history:
        assert record.participants == ["party-1", "party-3"]
        assert field in record.failures["party-2"]
    for rnd in range(1, 4):
        logged = [
            r.getMessage()
            for r in caplog.records
            if f"party 'party-2' round {rnd}" in r.getMessage() and field in r.getMessage()
        ]
        assert logged, f"no logged reason naming party-2, round {rnd} and {field!r}"
    # exactly as if party-2's replies had been lost
    np.testing.assert_array_equal(flatten(outcome.params), flatten(fit_lost.params))
    assert [r.global_metrics for r in outcome.history] == [
        r.global_metrics for r in fit_lost.history
    ]


def scale_confusion(factor: int) -> Forgery:
    def forge(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        stats = body["stats"]
        stats["confusion"] = [[c * factor for c in row] for row in stats["confusion"]]
        stats["score_hist"] = [[c * factor for c in row] for row in stats["score_hist"]]
        stats["loss_sum"] *= factor
        body["num_examples"] *= factor

    return forge


def perfect_on_paper(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """The issue's forgery: a huge all-correct confusion matrix with zero loss."""
    body["num_examples"] = 10**6
    body["stats"] = {"loss_sum": 0.0, "confusion": [[500_000, 0], [0, 500_000]]}
    body["stats"]["score_hist"] = [[500_000] + [0] * 999, [0] * 999 + [500_000]]
    body["metrics"] = {"loss": 0.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def recount(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    body["num_examples"] -= 1


def shrink(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    body["stats"]["confusion"] = [[body["num_examples"]]]


def inflate_accuracy(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    body["metrics"]["accuracy"] = 1.0057
    body["stats"]["loss_sum"] = -0.018 * body["num_examples"]


def claim_accuracy(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    body["metrics"]["accuracy"] = 0.999


EVAL_FORGERIES: dict[str, tuple[Forgery, str]] = {
    "nan metric": (setitem("metrics.f1", float("nan")), "field 'metrics.f1' is NaN"),
    "infinite loss sum": (
        setitem("stats.loss_sum", float("-inf")),
        "field 'stats.loss_sum' is NaN",
    ),
    "1x1 confusion": (shrink, "'stats.confusion' is 1x1, expected 2x2"),
    "more than the holdout": (scale_confusion(1000), "held-out rows"),
    "perfect on paper": (perfect_on_paper, "'num_examples' is 1000000"),
    "count differs": (recount, "'stats.confusion' counts"),
    "accuracy above one": (inflate_accuracy, "metrics.accuracy"),
    "metrics not its statistics": (claim_accuracy, "'metrics.accuracy' is 0.999"),
    "negative count": (setitem("num_examples", -3), "num_examples"),
    "another round": (lambda body, arrays: 0, "field 'round' is 0"),
}


@pytest.fixture(scope="module")
def eval_lost() -> TrainingOutcome:
    return run(TaskKind.EVALUATE, None, data={"test_fraction": 0})


@pytest.mark.parametrize("case", sorted(EVAL_FORGERIES))
def test_a_forged_evaluation_cannot_change_the_published_metrics(
    case: str, eval_lost: TrainingOutcome, caplog: pytest.LogCaptureFixture
) -> None:
    """No central test set: the global metrics are the merge of the parties' statistics."""
    forge, field = EVAL_FORGERIES[case]
    with caplog.at_level(logging.WARNING, logger="fedsilo.runtime"):
        outcome = run(TaskKind.EVALUATE, forge, data={"test_fraction": 0})
    for record, lost in zip(outcome.history, eval_lost.history, strict=True):
        assert record.participants == ["party-1", "party-2", "party-3"]  # it still trains
        assert sorted(record.party_metrics) == ["party-1", "party-3"]
        assert field in record.failures["party-2"]
        assert record.global_metrics == lost.global_metrics
        text = [r.getMessage() for r in caplog.records]
        assert any(f"party 'party-2' round {record.round}" in t and field in t for t in text)
    if case == "perfect on paper":  # party-2's honest statistics would have counted
        honest = run(TaskKind.EVALUATE, lambda body, arrays: None, data={"test_fraction": 0})
        assert honest.history[-1].global_metrics != eval_lost.history[-1].global_metrics
