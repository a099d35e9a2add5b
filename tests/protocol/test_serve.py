"""serve(): one decode, one dispatch, one error shape; the error tree's codes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedsilo import errors
from fedsilo.errors import (
    BudgetExhaustedError,
    ErrorCode,
    FedsiloError,
    MissingValueError,
    SchemaError,
    error_for,
)
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Reply, serve

TASK = Message(TaskKind.FIT, "job", 3, "coordinator", {"x": 1}, {"w": np.ones(2, np.float32)})


def _tree(cls: type[FedsiloError]) -> list[type[FedsiloError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


def test_every_error_in_the_tree_has_its_own_code_and_is_rebuilt_from_it() -> None:
    tree = [c for c in _tree(FedsiloError) if c.__module__ == errors.__name__]
    assert sorted(c.code.value for c in tree) == sorted(c.value for c in ErrorCode)
    for cls in tree:
        rebuilt = error_for(cls.code, "why")
        assert type(rebuilt) is cls and str(rebuilt) == "why"
    # nothing outside errors.py extends the tree (one tree, one place)
    assert {c.__module__ for c in _tree(FedsiloError)} == {errors.__name__}


def test_routes_answer_with_the_tasks_kind_job_round_and_the_partys_name() -> None:
    seen: list[Message] = []

    def fit(task: Message) -> Reply:
        seen.append(task)
        return {"num_examples": 5}, {"w": task.arrays["w"] * 2}

    sent: list[bytes] = []
    handler = serve("bank-a", {TaskKind.FIT: fit}, on_reply=sent.append)
    reply = Message.decode(handler(TASK.encode()))
    assert (reply.kind, reply.job_id, reply.round, reply.sender) == (
        TaskKind.FIT,
        "job",
        3,
        "bank-a",
    )
    assert reply.body == {"num_examples": 5} and reply.fault is None
    np.testing.assert_array_equal(reply.arrays["w"], [2.0, 2.0])
    assert seen[0].body == {"x": 1} and sent == [reply.encode()]


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (SchemaError("party 'bank-a' column 'age' is text"), ErrorCode.SCHEMA),
        (MissingValueError("3 missing"), ErrorCode.MISSING_VALUES),
        (BudgetExhaustedError("over budget"), ErrorCode.BUDGET_EXHAUSTED),
    ],
)
def test_a_raised_error_travels_as_its_code(raised: FedsiloError, code: ErrorCode) -> None:
    def fit(task: Message) -> Reply:
        raise raised

    reply = Message.decode(serve("bank-a", {TaskKind.FIT: fit})(TASK.encode()))
    assert reply.error_code is code and reply.error == str(raised)
    assert (reply.kind, reply.round, reply.body, reply.arrays) == (TaskKind.FIT, 3, {}, {})
    assert reply.fault is not None and type(reply.fault.exception()) is type(raised)


def test_unknown_kind_junk_and_crashes_become_replies_never_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash(task: Message) -> Reply:
        raise KeyError("plan")

    def nan_body(task: Message) -> Reply:
        return {"train_loss": float("nan")}, {}

    handler = serve("bank-a", {TaskKind.FIT: crash, TaskKind.EVALUATE: nan_body})
    other = Message(TaskKind.QUERY, "job", 3, "coordinator").encode()
    unsupported = Message.decode(handler(other))
    assert unsupported.error_code is ErrorCode.UNSUPPORTED
    assert unsupported.error == (
        "party 'bank-a' does not answer 'query' tasks (it answers: evaluate, fit)"
    )
    junk = Message.decode(handler(b"\x00" * 40))
    assert junk.error_code is ErrorCode.BAD_REQUEST and junk.round == -1
    assert junk.error is not None and junk.error.startswith("malformed task:")
    with caplog.at_level(logging.ERROR, logger="fedsilo.protocol.serve"):
        crashed = Message.decode(handler(TASK.encode()))
    assert crashed.error_code is ErrorCode.INTERNAL and crashed.error == "KeyError: 'plan'"
    assert "party bank-a failed on fit round 3" in caplog.text
    evaluate = Message(TaskKind.EVALUATE, "job", 3, "coordinator").encode()
    refused = Message.decode(handler(evaluate))  # a reply that cannot be encoded is an error
    assert refused.error_code is ErrorCode.INTERNAL and "ValueError" in (refused.error or "")


def test_a_route_may_return_a_whole_message() -> None:
    own = Message(TaskKind.FIT, "job", 3, "bank-a", {"own": True})
    reply = Message.decode(serve("bank-a", {TaskKind.FIT: lambda t: own})(TASK.encode()))
    assert reply == own
