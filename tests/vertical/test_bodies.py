"""Typed vertical bodies: a tampering party's malformed replies stop the job with a
ProtocolError naming the message, the party and the field, never with a crash."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsilo.errors import ProtocolError
from fedsilo.privacy.he import PaillierConfig, generate
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.bodies import PsiAligned
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.hetero_lr import HeteroLrArbiter, LrParams
from fedsilo.vertical.runner import VerticalRunner
from fedsilo.vertical.secureboost import relay
from tests.forgery import raw

Tamper = Callable[[dict[str, Any]], dict[str, Any]]


def forged(reply: Message, body: dict[str, Any]) -> Message:
    return Message.decode(raw(reply, body))  # the wire decoder lets it through


class Tampering:
    """An honest agent whose ``kind`` replies leave with a rewritten body (a malicious party)."""

    def __init__(self, agent: VerticalPartyAgent, kind: TaskKind, tamper: Tamper) -> None:
        self.agent, self.kind, self.tamper = agent, kind, tamper

    def handle(self, data: bytes) -> bytes:
        reply = Message.decode(self.agent.handle(data))
        if reply.kind is not self.kind:
            return reply.encode()
        return raw(reply, self.tamper(dict(reply.body)))


def _job(breast_files: tuple[Path, Path]) -> Any:
    guest, host = breast_files
    return parse_vertical_job(
        {
            "kind": "vertical",
            "name": "typed",
            "parties": [
                {"name": "bank", "path": str(guest), "id_column": "id", "label": "y"},
                {"name": "provider", "path": str(host), "id_column": "id"},
            ],
        }
    )


NAN = r"party '{party}' round \d+: {kind} field '{field}' is NaN or infinite"  # Message.decode
TYPED = r"party '{party}' round \d+: {kind} field '{field}' is invalid"  # the body model


@pytest.mark.parametrize(
    ("party", "kind", "tamper", "field", "refusal"),
    [
        ("provider", TaskKind.PSI_OPEN, lambda b: {**b, "rows": -5}, "rows", TYPED),
        ("bank", TaskKind.PSI_OPEN, lambda b: {**b, "rows": True}, "rows", TYPED),
        ("bank", TaskKind.PSI_REQUEST, lambda b: {**b, "elements": 2.5}, "elements", TYPED),
        ("bank", TaskKind.PSI_REQUEST, lambda b: {**b, "ids": ["P0001"]}, "ids", TYPED),
        ("bank", TaskKind.PSI_REQUEST, lambda b: {"elements": float("nan")}, "elements", NAN),
        ("bank", TaskKind.PSI_INTERSECT, lambda b: {"aligned": float("inf")}, "aligned", NAN),
        ("provider", TaskKind.PSI_FINISH, lambda b: {}, "aligned", TYPED),
        ("provider", TaskKind.PSI_FINISH, lambda b: {"aligned": "all of them"}, "aligned", TYPED),
    ],
)
def test_a_malformed_psi_reply_stops_the_job_naming_party_and_field(
    breast_files: tuple[Path, Path],
    party: str,
    kind: TaskKind,
    tamper: Tamper,
    field: str,
    refusal: str,
) -> None:
    job = _job(breast_files)
    handlers: dict[str, Any] = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    handlers[party] = Tampering(handlers[party], kind, tamper)
    runner = VerticalRunner(job, InProcessTransport(handlers))
    with pytest.raises(
        ProtocolError, match=refusal.format(kind=kind.value, party=party, field=field)
    ):
        runner.align()


def test_an_inflated_aligned_count_is_refused(breast_files: tuple[Path, Path]) -> None:
    """Guest and host agree on a count larger than either party's table: a lie, refused."""
    job = _job(breast_files)
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}

    class Inflating(InProcessTransport):
        def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
            got = super().exchange(tasks, timeout_s=timeout_s)
            for name, reply in got.replies.items():
                if reply.kind in (TaskKind.PSI_INTERSECT, TaskKind.PSI_FINISH):
                    body = PsiAligned(aligned=10**6).dump()
                    got.replies[name] = forged(reply, body)
            return got

    with pytest.raises(ProtocolError, match=r"1000000 aligned customers exceed the rows"):
        VerticalRunner(job, Inflating(agents)).align()


class ScriptedGuest:
    """A malicious SecureBoost guest answering every SB_STEP with a fixed (forged) body."""

    def __init__(self, body: dict[str, Any], arrays: dict[str, np.ndarray] | None = None):
        self.body, self.arrays = body, arrays or {}

    def handle(self, data: bytes) -> bytes:
        task = Message.decode(data)
        reply = Message(task.kind, task.job_id, task.round, "bank", {}, self.arrays)
        return raw(reply, self.body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            {"done": True, "test": {"auc": float("nan")}},
            r"party 'bank' round 0: sb_step field 'test\.auc' is NaN",
        ),
        ({"done": True, "test": {"auc": "1.0"}}, r"field 'test\.auc'"),
        ({"done": True, "n_trees": -1}, r"field 'n_trees'"),
        ({"done": True, "train_loss_per_tree": [0.5, float("inf")]}, r"train_loss_per_tree\[1\]"),
        ({"done": "yes"}, r"field 'done'"),
        (
            {"done": False, "tasks": {"provider": {"kind": "fit", "body": {}}}},
            r"field 'tasks\.provider\.kind'",
        ),
        (
            {"done": False, "tasks": {"mallory": {"kind": "sb_route", "body": {}}}},
            r"tasks for unknown parties",
        ),
    ],
)
def test_a_malformed_secureboost_step_reply_stops_the_relay(
    body: dict[str, Any], match: str
) -> None:
    transport = InProcessTransport({"bank": ScriptedGuest(body)})
    with pytest.raises(ProtocolError, match=match) as caught:
        relay(transport, "job-7", "bank", ["provider"], timeout_s=60.0)
    assert "'bank'" in str(caught.value)


def test_a_relayed_host_task_carries_the_jobs_id_and_no_nested_message() -> None:
    """The coordinator builds each host task itself: the real job id, a typed body, arrays."""
    seen: list[Message] = []

    class Host:
        def handle(self, data: bytes) -> bytes:
            task = Message.decode(data)
            seen.append(task)
            return Message(task.kind, task.job_id, task.round, "provider", {}).encode()

    step = {"done": False, "tasks": {"provider": {"kind": "sb_gradients", "round": 3}}}
    rows = {"provider/gh": np.arange(4, dtype=np.uint8)}
    transport = InProcessTransport({"bank": ScriptedGuest(step, rows), "provider": Host()})
    with pytest.raises(ProtocolError):  # the scripted guest never finishes; stop at step 2
        relay(transport, "job-7", "bank", ["provider"], timeout_s=60.0, on_tasks=_stop_after(2))
    assert seen and all(m.job_id == "job-7" for m in seen)
    assert seen[0].kind is TaskKind.SB_GRADIENTS and seen[0].round == 3
    assert list(seen[0].arrays) == ["gh"] and seen[0].arrays["gh"].tolist() == [0, 1, 2, 3]


def _stop_after(n: int) -> Callable[[Mapping[str, Message]], None]:
    calls = []

    def on_tasks(_: Mapping[str, Message]) -> None:
        calls.append(1)
        if len(calls) >= n:
            raise ProtocolError("test stops the relay")

    return on_tasks


@pytest.mark.parametrize(
    ("provider", "match"),
    [
        (
            {"role": "host", "features": -3},
            r"party 'provider' round 0: vertical_setup field 'features' is invalid",
        ),
        ({"role": "guest", "features": 20}, r"reply from 'provider': field 'role'"),
        (
            {"role": "host", "features": 20, "weights": [0.1]},
            r"party 'provider' round 0: vertical_setup field 'weights' is invalid",
        ),
    ],
)
def test_a_malformed_hetero_lr_setup_reply_stops_the_arbiter(
    provider: dict[str, Any], match: str
) -> None:
    class Party:
        def __init__(self, name: str, body: dict[str, Any]) -> None:
            self.name, self.body = name, body

        def handle(self, data: bytes) -> bytes:
            task = Message.decode(data)
            key = {"channel_key": np.zeros(32, dtype=np.uint8)}
            return raw(Message(task.kind, task.job_id, 0, self.name, {}, key), self.body)

    transport = InProcessTransport(
        {
            "bank": Party("bank", {"role": "guest", "features": 10}),
            "provider": Party("provider", provider),
        }
    )
    secret = generate("paillier", PaillierConfig(key_bits=1024))
    arbiter = HeteroLrArbiter(
        "j", transport, secret, guest="bank", hosts=["provider"], params=LrParams(), seed=0
    )
    rows = np.arange(10, dtype=np.int64)
    with pytest.raises(ProtocolError, match=match):
        arbiter.setup(rows[:8], rows[8:])
