"""Analytics under secure aggregation: real SecAgg/SecAgg+ crypto, no mocks of the protocol.

The secure sum equals the plain sum within the stated fixed-point bound (counts exact), the
coordinator never sees a party's statistics, a party failing at any step aborts the query
naming it (nothing charged, the parties keep answering), and queries never mix their state.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from fedsilo.analytics.fixed_point import FixedPoint, fraction_bits
from fedsilo.analytics.handler import AnalyticsAgent
from fedsilo.analytics.local import PartyTable, local_statistics
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import collect, public_job, run_query, simulated_party
from fedsilo.analytics.sql import parse_query
from fedsilo.errors import (
    AggregationError,
    BudgetExhaustedError,
    ConfigError,
    DataError,
    ErrorCode,
    ProtocolError,
)
from fedsilo.privacy.ledger import PrivacyLedger
from fedsilo.privacy.secagg.identity import simulated_identities
from fedsilo.protocol.messages import Fault, Message, TaskKind
from fedsilo.runtime.transport import Gathered, InProcessTransport, Transport

from .conftest import REGIONS, make_job, transport_for
from .test_exact import BINS, GROUPS, WHERES, frame, row

SQL_ALL = (
    "SELECT {select}COUNT(*) AS n, COUNT(amount) AS n_a, SUM(amount) AS s, AVG(amount) AS mean, "
    "VAR_SAMP(amount) AS vs, STDDEV_POP(score) AS sdp, COVAR_POP(amount, score) AS cp, "
    "CORR(amount, score) AS corr, HISTOGRAM(score, {bins}) AS h FROM t{where}{group}"
)


def secure(variant: str = "secagg+") -> dict[str, Any]:
    return {"mechanism": "none", "secure_aggregation": {"enabled": True, "variant": variant}}


def sql_for(where: str | None, group: tuple[str, ...]) -> str:
    return SQL_ALL.format(
        select="".join(f"{g}, " for g in group),
        bins=BINS,
        where=f" WHERE {where}" if where else "",
        group=" GROUP BY " + ", ".join(group) if group else "",
    )


def random_frames(parties: int, rows: int, seed: int = 0) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return [
        pd.DataFrame(
            {
                "region": rng.choice(REGIONS, rows),
                "year": rng.choice([2024, 2025], rows),
                "amount": rng.uniform(-20, 120, rows),  # some clip
                "score": rng.uniform(0, 100, rows),
            }
        )
        for _ in range(parties)
    ]


class Recording:
    """A transport wrapper: every task the coordinator sends and every reply it receives."""

    def __init__(
        self, inner: Transport, tamper: Callable[[str, str, Gathered], None] | None = None
    ) -> None:
        self.inner = inner
        self.tamper = tamper
        self.sent: list[Message] = []
        self.received: list[Message] = []

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        self.sent.extend(tasks.values())
        gathered = self.inner.exchange(tasks, timeout_s=timeout_s)
        if self.tamper is not None:
            step = str(next(iter(tasks.values())).body.get("secagg", {}).get("step", "plain"))
            for party in sorted(tasks):
                self.tamper(step, party, gathered)
        self.received.extend(gathered.replies.values())
        return gathered


def _plan_and_bound(sql: str, job: Any, parties: int) -> tuple[Any, FixedPoint, np.ndarray]:
    plan = make_plan(parse_query(sql, job), job)
    fp = FixedPoint.for_plan(plan, job.privacy.secure_aggregation.max_rows)
    return plan, fp, fp.error_bound(parties)


# No shrink phase: a failure reports its first example at once.
@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    parties=st.sampled_from([3, 10]),
    variant=st.sampled_from(["secagg", "secagg+"]),
    data=st.data(),
    where=st.sampled_from(WHERES),
    group=st.sampled_from(GROUPS),
)
def test_secure_sum_equals_plain_sum_within_the_stated_bound(
    parties: int, variant: str, data: st.DataObject, where: str | None, group: tuple[str, ...]
) -> None:
    frames = [frame(data.draw(st.lists(row, max_size=25))) for _ in range(parties)]
    plain_job, sec_job = make_job(parties), make_job(parties, secure(variant))
    sql = sql_for(where, group)
    plan, fp, bound = _plan_and_bound(sql, sec_job, parties)
    names = sec_job.party_names()
    plain = collect(plan, plain_job, transport_for(plain_job, frames), names, sql=sql).total
    got = collect(plan, sec_job, transport_for(sec_job, frames), names, sql=sql).total
    assert got.shape == plain.shape
    assert np.array_equal(got[:, fp.exact], plain[:, fp.exact])  # counts: exact
    assert np.all(bound[fp.exact] == 0) and np.all(bound[~fp.exact] > 0)
    slack = 1e-12 * np.abs(plain)  # the float sums themselves round
    assert np.all(np.abs(got - plain) <= bound + slack), np.max(np.abs(got - plain) - bound)


@pytest.mark.parametrize(("parties", "variant"), [(3, "secagg"), (10, "secagg+"), (10, "secagg")])
def test_every_aggregate_with_secure_aggregation_equals_the_plain_answer(
    parties: int, variant: str, tmp_path: Path
) -> None:
    frames = random_frames(parties, 200, seed=parties)
    plain_job, sec_job = make_job(parties), make_job(parties, secure(variant))
    for where, group in [(None, ()), ("year = 2025", ("region",)), (WHERES[3], ("region", "year"))]:
        sql = sql_for(where, group)
        a = run_query(plain_job, sql, transport=transport_for(plain_job, frames))
        b = run_query(sec_job, sql, transport=transport_for(sec_job, frames))
        assert a.groups == b.groups and a.labels == b.labels
        for ga, gb in zip(a.cells, b.cells, strict=True):
            for label, ca, cb in zip(a.labels, ga, gb, strict=True):
                if label in ("n", "n_a", "h"):
                    assert ca.value == cb.value  # counts and bins: exact
                elif ca.value is None:
                    assert cb.value is None
                else:
                    assert isinstance(ca.value, float) and isinstance(cb.value, float)
                    assert math.isclose(ca.value, cb.value, rel_tol=1e-8, abs_tol=1e-8), label
        assert b.notices[0].startswith(
            f"sums: secure aggregation ({'SecAgg+' if variant == 'secagg+' else 'SecAgg'}), "
            "coordinator sees only the sum"
        )
        assert a.notices[0] == "sums: plain (secure aggregation not enabled)"


def test_the_coordinator_never_receives_a_party_statistics_array(tmp_path: Path) -> None:
    frames = random_frames(4, 50)
    job = make_job(4, secure("secagg"))
    sql = sql_for(None, ("region",))
    plan = make_plan(parse_query(sql, job), job)
    fp = FixedPoint.for_plan(plan, job.privacy.secure_aggregation.max_rows)
    rec = Recording(transport_for(job, frames))
    run_query(job, sql, transport=rec)
    steps = [str(m.body["secagg"]["step"]) for m in rec.sent]
    assert steps == [s for s in ("keys", "shares", "mask", "confirm", "unmask") for _ in range(4)]
    assert [m.kind for m in rec.received] == [TaskKind.QUERY] * 20
    own = {f"p{i}": fp.encode(own_statistics(plan, f)) for i, f in enumerate(frames)}
    for reply in rec.received:
        assert "stats" not in reply.arrays and "statistics" not in reply.arrays
        assert set(reply.arrays) <= {"masked"}
        for arr in reply.arrays.values():
            assert arr.dtype == np.uint64 and arr.shape == own[reply.sender].shape
            assert not np.array_equal(arr, own[reply.sender])  # masked, not the encoding
        assert not any(
            isinstance(v, list) and len(v) == plan.num_stats for v in reply.body.values()
        )
    # only the task of step 'keys' carries the plan; nothing plain comes back at any step
    assert all(("plan" in m.body) == (m.body["secagg"]["step"] == "keys") for m in rec.sent)


def test_neighbours_below_the_parties_minimum_are_raised_and_the_query_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames = random_frames(10, 50)
    job = make_job(
        10,
        {
            "mechanism": "none",
            "secure_aggregation": {"enabled": True, "variant": "secagg+", "neighbours": 2},
        },
    )
    rec = Recording(transport_for(job, frames))
    with caplog.at_level(logging.WARNING, logger="fedsilo.analytics.secure"):
        answer = run_query(job, "SELECT COUNT(*) AS n FROM t", transport=rec)

    assert answer.cells[0][0].value == 500
    degrees = {m.body["secagg"]["degree"] for m in rec.sent if m.body["secagg"]["step"] == "keys"}
    assert degrees == {4}  # the least parties with the default rates accept for 10 parties
    assert "privacy.secure_aggregation.neighbours = 2 is below the least degree" in caplog.text
    assert "using 4 neighbours" in caplog.text


def own_statistics(plan: Any, df: pd.DataFrame) -> np.ndarray:
    return local_statistics(plan, PartyTable("f", frame=df), party="x")


@pytest.mark.parametrize("step", ["keys", "shares", "mask", "confirm", "unmask"])
@pytest.mark.parametrize("how", ["drop", "error"])
def test_a_party_failing_mid_protocol_aborts_naming_it(step: str, how: str, tmp_path: Path) -> None:
    frames = random_frames(3, 40)
    job = make_job(3, secure() | {"mechanism": "gaussian", "epsilon": 1.0})
    inner = transport_for(job, frames, tmp_path)

    def charged() -> list[int]:
        return [
            len(PrivacyLedger(tmp_path / f"{p}.sqlite", p).entries()) for p in job.party_names()
        ]

    def fail(at: str, party: str, gathered: Gathered) -> None:
        if at == step and party == "p1":
            gathered.replies.pop("p1", None)
            if how == "drop":
                gathered.failures["p1"] = "no reply within 600 s"
            else:
                fault = Fault(ErrorCode.DATA, "disk on fire")
                err = Message(TaskKind.QUERY, job.name, 0, "p1", fault=fault)
                gathered.replies["p1"] = err

    sql = "SELECT region, COUNT(*), AVG(amount) FROM t GROUP BY region"
    rec = Recording(inner, fail)
    with pytest.raises(ProtocolError) as err:
        run_query(job, sql, transport=rec)
    text = str(err.value)
    assert "party 'p1'" in text and f"step '{step}'" in text
    assert "party 'p0'" not in text and "party 'p2'" not in text
    assert ("disk on fire" in text) == (how == "error")
    # the coordinator stopped there: no later step was sent, and no unmask after a failure
    steps = [m.body["secagg"]["step"] for m in rec.sent]
    assert steps[-1] == step
    # nothing released; a party is charged once its masked statistics left (step 'mask': the
    # reply is lost only after p1 sent it), never before
    before = charged()
    assert before == ([1, 1, 1] if step in ("mask", "confirm", "unmask") else [0, 0, 0])
    # the parties are unharmed: the next query over the same agents succeeds
    again = run_query(job, sql, transport=inner)
    assert len(again.groups) == len(REGIONS)
    assert charged() == [n + 1 for n in before]


def test_a_party_that_crashes_or_answers_garbage_aborts_cleanly(tmp_path: Path) -> None:
    frames = random_frames(3, 30)
    job = make_job(3, secure())
    ids = simulated_identities(["p0", "p1", "p2"])
    agents = {
        f"p{i}": simulated_party(f"p{i}", PartyTable(f"f{i}", frame=f), job, identity=ids[f"p{i}"])
        for i, f in enumerate(frames)
    }

    class Crashing:
        def __init__(self, inner: AnalyticsAgent, step: str, garbage: bool) -> None:
            self.inner, self.step, self.garbage = inner, step, garbage

        def handle(self, data: bytes) -> bytes:
            task = Message.decode(data)
            if task.body.get("secagg", {}).get("step") == self.step:
                if self.garbage:
                    return b"\x00not a message"
                raise RuntimeError("segfault-ish")
            return self.inner.handle(data)

    sql = "SELECT COUNT(*), SUM(score) FROM t"
    for step, garbage in [("mask", False), ("shares", True)]:
        parties: dict[str, Any] = dict(agents)
        parties["p2"] = Crashing(agents["p2"], step, garbage)
        with pytest.raises(ProtocolError, match=rf"step '{step}'.*party 'p2'"):
            run_query(job, sql, transport=InProcessTransport(parties))


def test_interleaved_queries_keep_their_protocol_state_apart(tmp_path: Path) -> None:
    """A second query runs in full in the middle of the first (between its steps)."""
    frames = random_frames(3, 60)
    job, plain_job = make_job(3, secure("secagg")), make_job(3)
    base = transport_for(job, frames)
    q1 = "SELECT region, SUM(amount), COUNT(*) FROM t GROUP BY region"
    q2 = "SELECT year, AVG(score), HISTOGRAM(amount, BINS=[0, 50, 100]) FROM t GROUP BY year"
    inner_result: list[Any] = []

    class Interleaving:
        def party_names(self) -> list[str]:
            return base.party_names()

        def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
            step = next(iter(tasks.values())).body["secagg"]["step"]
            if step == "mask" and not inner_result:
                inner_result.append(run_query(job, q2, transport=base))
            return base.exchange(tasks, timeout_s=timeout_s)

    outer = run_query(job, q1, transport=Interleaving())
    for sql, got in [(q1, outer), (q2, inner_result[0])]:
        want = run_query(plain_job, sql, transport=transport_for(plain_job, frames))
        for gw, gg in zip(want.cells, got.cells, strict=True):
            for cw, cg in zip(gw, gg, strict=True):
                assert np.allclose(cw.value, cg.value, rtol=1e-9, atol=1e-6)  # type: ignore[arg-type]


def test_a_step_without_its_keys_step_is_refused_naming_the_party() -> None:
    job = make_job(2, secure())
    agent = simulated_party("p0", PartyTable("f", frame=random_frames(1, 5)[0]), job)
    task = Message(
        TaskKind.QUERY, job.name, 0, "coordinator", {"secagg": {"query": "q9", "step": "mask"}}
    )
    reply = Message.decode(agent.handle(task.encode()))
    assert reply.error is not None and "party 'p0'" in reply.error and "query q9" in reply.error
    bad = Message(TaskKind.QUERY, job.name, 0, "coordinator", {"secagg": {"step": "dance"}})
    refused = str(Message.decode(agent.handle(bad.encode())).error)
    assert "party 'p0' round 0: query field 'secagg." in refused and "is invalid" in refused


def test_a_party_of_a_secure_job_refuses_to_send_plain_statistics() -> None:
    job = make_job(2, secure())
    plan = make_plan(parse_query("SELECT COUNT(*) FROM t", job), job)
    agent = simulated_party("p0", PartyTable("f", frame=random_frames(1, 5)[0]), job)
    body = {"plan": plan.to_json(), "job": public_job(job), "sql": "SELECT COUNT(*) FROM t"}
    reply = Message.decode(agent.handle(Message(TaskKind.QUERY, job.name, 0, "c", body).encode()))
    assert reply.error is not None and "in the clear" in reply.error and "p0" in reply.error
    assert not reply.arrays


def test_one_party_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    job = make_job(1, secure())
    with pytest.raises(ConfigError, match=r"at least 2 parties.*\(p0\).*own statistics"):
        run_query(
            job,
            "SELECT COUNT(*) FROM t",
            transport=transport_for(job, random_frames(1, 5)),
        )


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"variant": "secagg", "neighbours": 4}, "applies to variant = 'secagg+' only"),
        ({"bits": 32}, "'bits' is a training setting"),
        ({"clip_range": 4.0}, "'clip_range' is a training setting"),
        ({"variant": "paillier"}, "privacy.secure_aggregation.variant"),
        ({"max_rows": 0}, "privacy.secure_aggregation.max_rows"),
    ],
)
def test_secure_aggregation_config_errors_name_the_key(
    extra: dict[str, Any], fragment: str
) -> None:
    raw = {"mechanism": "none", "secure_aggregation": {"enabled": True} | extra}
    with pytest.raises(ConfigError) as err:
        make_job(3, raw)
    assert fragment in str(err.value)


def test_fixed_point_counts_are_exact_and_overflow_is_refused() -> None:
    job = make_job(3, secure())
    plan = make_plan(parse_query("SELECT COUNT(*), SUM(amount) FROM t", job), job)
    fp = FixedPoint.for_plan(plan, 10**6)
    assert fraction_bits(10**6) == 62 - 20
    big = np.array([[999_999.0, 999_999.0, 999_999 * 50.0]])  # count, n, max centred sum
    total = fp.encode(big) + fp.encode(np.array([[1.0, 1.0, -50.0]]))
    out = fp.decode(total, groups=1)
    assert out[0, 0] == 1_000_000.0 and out[0, 1] == 1_000_000.0
    assert abs(out[0, 2] - (999_999 * 50.0 - 50.0)) <= fp.error_bound(2)[2]
    fp.check_rows(out[:, 0], 10**6)
    with pytest.raises(AggregationError, match="max_rows = 999999"):
        fp.check_rows(out[:, 0], 999_999)
    with pytest.raises(DataError, match=r"party 'p7'.*raise max_rows"):
        fp.encode(np.array([[1.0, 1.0, 50.0 * 2.0**21]]), party="p7")


def test_a_party_that_cannot_afford_a_secure_query_refuses_at_step_keys(tmp_path: Path) -> None:
    """The early budget check: the party refuses before its keys (or its statistics, masked or
    not) leave; nobody is charged, and the coordinator sends no further step."""
    budgets = {"p0": 5.0, "p1": 0.5, "p2": 5.0}
    parties = [{"name": p, "path": f"unused-{p}.csv", "max_epsilon": b} for p, b in budgets.items()]
    job = make_job(3, secure() | {"mechanism": "laplace", "epsilon": 1.0}, parties=parties)
    rec = Recording(transport_for(job, random_frames(3, 30), tmp_path))
    with pytest.raises(BudgetExhaustedError) as err:
        run_query(job, "SELECT COUNT(*), SUM(amount) FROM t", transport=rec)
    assert "step 'keys'" in str(err.value) and "party 'p1'" in str(err.value)
    assert {m.body["secagg"]["step"] for m in rec.sent} == {"keys"}
    p1 = next(r for r in rec.received if r.sender == "p1")
    assert p1.error_code is ErrorCode.BUDGET_EXHAUSTED and not p1.body and not p1.arrays
    assert [len(PrivacyLedger(tmp_path / f"{p}.sqlite", p).entries()) for p in budgets] == [0] * 3


@pytest.mark.parametrize("variant", ["secagg", "secagg+"])
def test_parties_refuse_a_survivor_set_that_drops_anyone(variant: str, tmp_path: Path) -> None:
    """A coordinator that names a party dropped (a query never tolerates a dropout)."""
    frames = random_frames(4, 30)
    job = make_job(4, secure(variant))
    inner = transport_for(job, frames)

    class Dropping:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def party_names(self) -> list[str]:
            return inner.party_names()

        def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
            step = next(iter(tasks.values())).body["secagg"]["step"]
            self.sent.append(step)
            if step == "confirm":  # every party is told that p3 dropped
                tasks = {
                    p: Message(
                        t.kind,
                        t.job_id,
                        t.round,
                        t.sender,
                        t.body | {"secagg": t.body["secagg"] | {"survivors": ["p0", "p1", "p2"]}},
                    )
                    for p, t in tasks.items()
                }
            return inner.exchange(tasks, timeout_s=timeout_s)

    rogue = Dropping()
    with pytest.raises(ProtocolError) as err:
        run_query(job, "SELECT COUNT(*), SUM(amount) FROM t", transport=rogue)
    text = str(err.value)
    assert "step 'confirm'" in text
    assert "parties 'p0', 'p1', 'p2': each party refuses" in text  # one reason, said once
    assert "p3 named as dropped" in text and "no query tolerates a dropout" in text
    assert rogue.sent[-1] == "confirm"  # no unmask request could follow


def test_a_forged_share_at_step_mask_is_refused_before_anything_is_charged(
    tmp_path: Path,
) -> None:
    """A coordinator that corrupts one encrypted share in the 'mask' step: the party refuses to
    mask (AES-GCM fails) and charges nothing: a refused step costs the party no budget."""
    names = ["p0", "p1", "p2"]
    parties = [{"name": p, "path": f"unused-{p}.csv", "max_epsilon": 5.0} for p in names]
    job = make_job(3, secure() | {"mechanism": "laplace", "epsilon": 1.0}, parties=parties)
    inner = transport_for(job, random_frames(3, 30), tmp_path)

    class Forging:
        def party_names(self) -> list[str]:
            return inner.party_names()

        def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
            first = next(iter(tasks.values()))
            if first.body["secagg"]["step"] == "mask":  # flip one byte of a share to p1
                task = tasks["p1"]
                shares = dict(task.body["secagg"]["shares"])
                sender = sorted(shares)[0]
                blob = bytearray(base64.b64decode(shares[sender]))
                blob[-1] ^= 1
                shares[sender] = base64.b64encode(blob).decode()
                secagg = task.body["secagg"] | {"shares": shares}
                tasks = dict(tasks) | {
                    "p1": Message(
                        task.kind,
                        task.job_id,
                        task.round,
                        task.sender,
                        task.body | {"secagg": secagg},
                    )
                }
            return inner.exchange(tasks, timeout_s=timeout_s)

    with pytest.raises(ProtocolError) as err:
        run_query(job, "SELECT COUNT(*), SUM(amount) FROM t", transport=Forging())
    assert "step 'mask'" in str(err.value) and "party 'p1'" in str(err.value)
    assert "failed to decrypt" in str(err.value)
    assert len(PrivacyLedger(tmp_path / "p1.sqlite", "p1").entries()) == 0
