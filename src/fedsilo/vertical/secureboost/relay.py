"""SecureBoost over the coordinator: host tasks and replies ride inside ``SB_STEP`` messages.

The guest's protocol (:class:`~fedsilo.vertical.secureboost.SecureBoostGuest`) decides which
host gets which task; the coordinator holds no key and only relays. A step reply of the guest
carries, per host, a :class:`~fedsilo.vertical.bodies.Relayed` entry (task kind, round and
body) with the arrays beside it as ``"<host>/<name>"``. :func:`relay` turns each entry into
a real :class:`Message` for that host, with the job's id, sends them in one exchange and packs
the replies the same way into the guest's next ``SB_STEP``. Every message is decoded once, by
the party it is addressed to; nothing is encoded inside another message.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping

import numpy as np

from fedsilo.errors import NotReadyError, ProtocolError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Transport
from fedsilo.vertical.bodies import Relayed, SbStep, SbStepReply

Arrays = dict[str, np.ndarray]


def pack(messages: Mapping[str, Message]) -> tuple[dict[str, Relayed], Arrays]:
    """Per-party messages as ``Relayed`` entries and ``"<party>/<array>"`` arrays."""
    entries: dict[str, Relayed] = {}
    arrays: Arrays = {}
    for party, msg in messages.items():
        entries[party] = Relayed.parse(
            {"kind": msg.kind.value, "round": msg.round, "body": msg.body},
            f"{msg.kind.value} for {party!r}",
        )
        arrays.update({f"{party}/{name}": arr for name, arr in msg.arrays.items()})
    return entries, arrays


def unpack(
    entries: Mapping[str, Relayed], outer: Message, *, sender: Callable[[str], str]
) -> dict[str, Message]:
    """The messages :func:`pack` packed into ``outer``; ``sender(party)`` names each sender."""
    out: dict[str, Message] = {}
    for party, entry in entries.items():
        prefix = f"{party}/"
        arrays = {k[len(prefix) :]: v for k, v in outer.arrays.items() if k.startswith(prefix)}
        kind = TaskKind(entry.kind)
        out[party] = Message(kind, outer.job_id, entry.round, sender(party), entry.body, arrays)
    stray = [k for k in outer.arrays if k.split("/", 1)[0] not in entries]
    if stray:
        raise ProtocolError(f"{outer.kind.value} from {outer.sender!r}: stray arrays {stray}")
    return out


def check_replies(replies: Mapping[str, Message], sent: Mapping[str, Message], who: str) -> None:
    """Every party that got a task answered it, with the same kind and round, and no other."""
    if set(replies) != set(sent):
        raise ProtocolError(
            f"{who}: replies from {sorted(replies)} for tasks sent to {sorted(sent)}"
        )
    for party, reply in replies.items():
        task = sent[party]
        if (reply.kind, reply.round) != (task.kind, task.round):
            raise ProtocolError(
                f"{who}: {party!r} answered a {reply.kind.value} of round {reply.round} to a "
                f"{task.kind.value} of round {task.round}"
            )


Protocol = Generator[dict[str, Message], dict[str, Message], SbStepReply | None]
"""A guest protocol: yields host tasks, receives their replies, returns its final body."""


class GuestSteps:
    """The guest's side of :func:`relay`: drives one protocol generator, one ``SB_STEP`` at
    a time (start it, check and feed the hosts' replies, pack the next host tasks)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._protocol: Protocol | None = None
        self._sent: dict[str, Message] = {}

    def step(self, task: Message, body: SbStep, start: Callable[[], Protocol]) -> Message:
        who = f"guest {self.name!r}"
        try:
            if body.start:
                self._protocol, self._sent = start(), {}
                tasks = next(self._protocol)
            else:
                if self._protocol is None:
                    raise NotReadyError(f"{who}: sb_step before the start step")
                replies = unpack(body.replies, task, sender=lambda party: party)
                check_replies(replies, self._sent, who)
                tasks = self._protocol.send(replies)
        except StopIteration as stop:
            self._protocol = None
            done = SbStepReply(done=True) if stop.value is None else stop.value
            return self._reply(task, done, {})
        self._sent = tasks
        entries, arrays = pack(tasks)
        return self._reply(task, SbStepReply(done=False, tasks=entries), arrays)

    def _reply(self, task: Message, body: SbStepReply, arrays: Arrays) -> Message:
        return Message(TaskKind.SB_STEP, task.job_id, task.round, self.name, body.dump(), arrays)


def relay(
    transport: Transport,
    job_id: str,
    guest: str,
    hosts: list[str],
    *,
    timeout_s: float,
    phase: str = "train",
    on_tasks: Callable[[Mapping[str, Message]], None] | None = None,
) -> SbStepReply:
    """Coordinator loop: start the guest, relay its host tasks and the replies until done.

    ``on_tasks`` sees every batch of host tasks before it is sent (e.g. to time the trees).
    Returns the guest's final (``done``) reply body, validated.
    """

    def ask_guest(step: int, body: SbStep, arrays: Arrays) -> tuple[SbStepReply, Message]:
        task = Message(TaskKind.SB_STEP, job_id, step, "coordinator", body.dump(), arrays)
        got = transport.exchange({guest: task}, timeout_s=timeout_s)
        reply = got.require_all(f"SecureBoost {phase}, step {step}")[guest]
        return SbStepReply.of(reply), reply

    step = 0
    start = SbStep.parse({"start": True, "phase": phase, "hosts": hosts}, "SecureBoost start")
    answer, reply = ask_guest(step, start, {})
    while not answer.done:
        step += 1
        if not set(answer.tasks) <= set(hosts):
            raise ProtocolError(f"sb_step reply from {guest!r}: tasks for unknown parties")
        tasks = unpack(answer.tasks, reply, sender=lambda _: "coordinator")
        if on_tasks is not None:
            on_tasks(tasks)
        got = transport.exchange(tasks, timeout_s=timeout_s)
        replies = got.require_all(f"SecureBoost {phase}, step {step}")
        entries, arrays = pack(replies)
        body = SbStep.parse({"phase": phase, "replies": entries}, "SecureBoost step")
        answer, reply = ask_guest(step, body, arrays)
    return answer
