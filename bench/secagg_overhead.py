"""Secure aggregation cost vs plain aggregation: the protocol alone, and a whole round.

    .venv/bin/python bench/secagg_overhead.py [--sizes 10 50 100] [--params 100000]

Protocol: the same N random updates of ``--params`` values are summed plainly (weighted
numpy sum, what FedAvg does) and through the SecAgg/SecAgg+ state machines (quantize, signed
key advertisements, key agreement, Shamir, AES-GCM, AES-CTR masks, the consistency
round, unmask), all parties in this process, one core, each party in a fresh session: this is
a job's first round, every neighbour's signature checked and every channel agreed;
``x`` is secure time / plain time. Bytes per party: what one party sends and receives,
as encoded messages. Round: one full simulated round (train + aggregate + evaluate) on
mnist-5k with an MLP of ~102k parameters, plain vs secure, 0% and 20% of parties dropping
after masking; the medians of rounds 2-6 of 7 are timed (round 1 warms up; the parties'
sessions checked their neighbours' signed channel keys there, as in every round of a job
after its first; one round alone swings by 2x on this VM); with
``--repeats R`` plain and secure alternate R times and the table gives the medians, the ratio
of the median CPU seconds, the median (range) of the R secure/plain pairs and the ratio of
the runs' mean round CPU (the median drops a cost that strikes one round in several, the
mean keeps it), with the load
average (CPU seconds inflate unevenly on a loaded machine); a second table splits the CPU into
the parties' (inside their handlers: per party, what its own machine spends when deployed)
and the coordinator's (the rest). Torch and BLAS run one thread
each, so CPU seconds equal single-core time (with a second BLAS thread, its spinning showed
up as CPU in every plain round).

The issue #11 target, SecAgg+ at N = 100 <= 3x plain in CPU:

    .venv/bin/python bench/secagg_overhead.py --sizes 100 --skip-protocol --repeats 5

Quick check (seconds): ``--sizes 10 --skip-protocol``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fedsilo.config import parse_job
from fedsilo.privacy.secagg import wire
from fedsilo.privacy.secagg.identity import simulated_identities
from fedsilo.privacy.secagg.protocol import PartyRound, ServerRound
from fedsilo.privacy.secagg.quantize import Quantizer
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator, RoundRecord
from fedsilo.runtime.party import PartyAgent
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.simulation import load_simulated_data, simulated_party_identities


def protocol_cost(n: int, d: int, plus: bool, dropout: float) -> tuple[float, float, float]:
    """(plain s, secure s, max abs error) for summing n updates of d values."""
    rng = np.random.default_rng(0)
    updates = rng.normal(0, 0.01, (n, d))
    weights = rng.integers(20, 60, n).astype(np.float64)
    t0 = time.perf_counter()
    plain = (weights[:, None] * updates).sum(axis=0) / weights.sum()
    plain_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    names = [f"p{i:03d}" for i in range(n)]
    setup = wire.plan_round(
        names,
        plus=plus,
        neighbours=None,
        threshold=0.5,
        bits=32,
        length=d + 1,
        tag="bench",
        graph_seed=1,
    )
    quant = Quantizer(4.0, 32, n)
    ids = simulated_identities(names)
    parties = {p: PartyRound(ids[p], setup) for p in names}
    server = ServerRound(setup)
    routed = server.route_keys({p: r.advertise() for p, r in parties.items()})
    inbox = server.route_shares({p: parties[p].share(ks) for p, ks in routed.items()})
    drop = set(names[:: max(1, round(1 / dropout))][: round(dropout * n)]) if dropout else set()
    scale = weights.max()
    masked = {}
    for i, p in enumerate(names):
        if p in drop:
            continue
        w = weights[i] / scale
        vec = quant.encode(np.concatenate([updates[i] * w, [w]]), np.random.default_rng(i))
        masked[p] = parties[p].mask(inbox[p], vec)
    alive, _ = server.collect(masked)
    relayed = server.route_confirmations(
        {p: parties[p].confirm(server.confirm_request()) for p in alive}
    )
    total = quant.decode_sum(
        server.unmask({p: parties[p].unmask(relayed[p]) for p in alive}), len(alive)
    )
    secure = total[:-1] / total[-1]
    secure_s = time.perf_counter() - t0
    keep = [i for i, p in enumerate(names) if p not in drop]
    ref = (weights[keep, None] * updates[keep]).sum(axis=0) / weights[keep].sum()
    del plain
    return plain_s, secure_s, float(np.abs(secure - ref).max())


class _Counting:
    """Counts bytes per party and drops chosen parties from FIT on."""

    def __init__(self, inner: InProcessTransport, drop: set[str]) -> None:
        self.inner, self.drop = inner, drop
        self.bytes: dict[str, int] = {}
        self.count = False

    def party_names(self) -> list[str]:
        return self.inner.party_names()

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        kind = next(iter(tasks.values())).kind
        kept = {p: t for p, t in tasks.items() if not (kind is TaskKind.FIT and p in self.drop)}
        kept = {
            p: t for p, t in kept.items() if not (kind is TaskKind.SECAGG_UNMASK and p in self.drop)
        }
        out = self.inner.exchange(kept, timeout_s=timeout_s)
        if self.count and kind is not TaskKind.EVALUATE:
            for p, t in kept.items():
                size = len(t.encode()) + (len(out.replies[p].encode()) if p in out.replies else 0)
                self.bytes[p] = self.bytes.get(p, 0) + size
        lost = {p: "dropped" for p in tasks if p not in kept}
        return Gathered(out.replies, {**out.failures, **lost})


TIMED_ROUNDS = 5  # one round alone swings by 2x here (page faults, the host): take a median


class _Timed:
    """A party whose CPU seconds are counted: its ``handle`` (decode the task, compute, encode
    the reply) is the party's work; the rest of a round is the coordinator's."""

    def __init__(self, inner: PartyAgent, spent: list[float]) -> None:
        self.inner, self.spent = inner, spent

    def handle(self, data: bytes) -> bytes:
        started = time.thread_time()
        try:
            return self.inner.handle(data)
        finally:
            self.spent[0] += time.thread_time() - started


@dataclass(frozen=True)
class RoundCost:
    """One run's figures over its timed rounds (2-6): medians unless said otherwise."""

    wall_s: float
    cpu_s: float  # this process: every party and the coordinator
    bytes_per_party: float  # the last round's (same parties dropping)
    mean_cpu_s: float  # the mean, which keeps what strikes one round in several (a full GC)
    party_cpu_s: float  # inside the parties' handlers, summed over the parties

    @property
    def coordinator_cpu_s(self) -> float:
        return self.cpu_s - self.party_cpu_s


def full_round(n: int, secure: bool, dropout: float) -> RoundCost:
    """One 7-round job's figures (:class:`RoundCost`) over rounds 2-6.

    CPU seconds (one torch thread, every party in this process) are what the round costs
    regardless of what else the machine runs; wall seconds are shown beside them. The
    parties' share is the CPU inside their handlers (what each party's own machine would
    spend in a deployment); the coordinator's is the rest.
    """
    privacy = {
        "secure_aggregation": {"enabled": secure, "variant": "secagg+" if n > 10 else "secagg"}
    }
    job = parse_job(
        {
            "name": "bench",
            "seed": 0,
            "rounds": TIMED_ROUNDS + 2,
            "data": {
                "dataset": "mnist-5k",
                "num_parties": n,
                "partition": "iid",
                "min_partition_size": 5,
            },
            "model": {"name": "mlp", "hidden": [128]},
            "training": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
            "selection": {"min_parties": 2},
            "privacy": privacy,
        },
        source="bench",
    )
    data = load_simulated_data(job)
    ids = simulated_party_identities(job, data.parties)
    agents = {name: PartyAgent(name, d, identity=ids[name]) for name, d in data.parties.items()}
    names = sorted(agents)
    drop = set(names[:: max(1, round(1 / dropout))][: round(dropout * n)]) if dropout else set()
    spent = [0.0]
    timed_agents = {name: _Timed(agent, spent) for name, agent in agents.items()}
    transport = _Counting(InProcessTransport(timed_agents), set())
    rounds: list[float] = []
    cpu: list[float] = []
    party_cpu: list[float] = []

    def on_round(record: RoundRecord) -> None:
        rounds.append(record.duration_s)
        cpu.append(time.process_time())
        party_cpu.append(spent[0])
        # round 1 is warm-up, rounds 2-6 are timed, the last counts bytes (the counting
        # re-encodes every message, which is the benchmark's cost, not the round's)
        transport.drop, transport.count = drop, len(rounds) == TIMED_ROUNDS + 1

    Coordinator(job, transport, on_round=on_round).run()
    timed = slice(1, TIMED_ROUNDS + 1)
    wall = float(np.median(rounds[timed]))
    per_round = np.diff(cpu)[:TIMED_ROUNDS]
    return RoundCost(
        wall_s=wall,
        cpu_s=float(np.median(per_round)),
        bytes_per_party=float(np.mean(list(transport.bytes.values()))),
        mean_cpu_s=float(per_round.mean()),
        party_cpu_s=float(np.median(np.diff(party_cpu)[:TIMED_ROUNDS])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--skip-rounds", action="store_true")
    parser.add_argument("--skip-protocol", action="store_true")
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="full rounds: alternate plain and secure this many times, report the medians",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # comparable CPU seconds; the parties run one after another anyway
    # and one BLAS thread: the plain round's FedAvg is a BLAS product, and OpenBLAS's second
    # thread spins while it waits, which counted ~0.1 s of idle CPU into every plain round
    threadpool_limits(1)
    if not args.skip_protocol:
        protocol_table(args.sizes, args.params)
    if not args.skip_rounds:
        round_table(args.sizes, args.dropouts, args.repeats)


def protocol_table(sizes: list[int], params: int) -> None:
    print(f"Protocol only, {params:,} values per update")
    print(
        f"{'N':>4} {'variant':>8} {'drop':>5} {'plain s':>8} {'secure s':>9} {'x':>7} {'max err':>9}"
    )
    for n in sizes:
        for plus in [False, True] if n > 10 else [False]:
            for dropout in (0.0, 0.2):
                p, s, err = protocol_cost(n, params, plus, dropout)
                name = "secagg+" if plus else "secagg"
                print(
                    f"{n:>4} {name:>8} {dropout:>5.0%} {p:>8.4f} {s:>9.3f} {s / p:>7.0f} {err:>9.1e}"
                )


def round_table(sizes: list[int], dropouts: list[float], repeats: int) -> None:
    print("\nFull round (train + aggregate + evaluate), mnist-5k, mlp[128] (101,770 params)")
    print(f"load average at start: {_load()}")
    print(
        f"{'N':>4} {'drop':>5} {'plain s':>8} {'secure s':>9} {'ratio':>6} {'plain cpu':>9} "
        f"{'secure cpu':>10} {'cpu ratio':>9} {'pair ratios':>17} {'mean ratio':>10} "
        f"{'KB/party plain':>15} {'KB/party secure':>16}"
    )
    split: list[tuple[int, float, list[RoundCost], list[RoundCost]]] = []
    for n in sizes:
        for dropout in dropouts:
            plain, secure = [], []
            for _ in range(repeats):  # alternate, so a change in machine load hits both
                plain.append(full_round(n, False, dropout))
                secure.append(full_round(n, True, dropout))
            p, s = _median(plain, "wall_s"), _median(secure, "wall_s")
            pc, sc = _median(plain, "cpu_s"), _median(secure, "cpu_s")
            pb, sb = plain[0].bytes_per_party, secure[0].bytes_per_party
            # each secure run over the plain run just before it: the median and the range
            pairs = [b.cpu_s / a.cpu_s for a, b in zip(plain, secure, strict=True)]
            spread = f"{np.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
            # the same from each run's mean round CPU (what a job pays on average)
            mean = _median(secure, "mean_cpu_s") / _median(plain, "mean_cpu_s")
            print(
                f"{n:>4} {dropout:>5.0%} {p:>8.2f} {s:>9.2f} {s / p:>6.2f} {pc:>9.2f} {sc:>10.2f} "
                f"{sc / pc:>9.2f} {spread:>17} {mean:>10.2f} {pb / 1e3:>15.0f} {sb / 1e3:>16.0f}"
            )
            split.append((n, dropout, plain, secure))
    print(f"load average at end: {_load()}")
    print(
        "\nWhere the CPU goes (medians): per party = inside one party's handler, per round (what "
        "its own machine spends when deployed); coordinator = the rest of the process"
    )
    print(
        f"{'N':>4} {'drop':>5} {'party ms plain':>14} {'party ms secure':>15} {'party x':>7} "
        f"{'coord s plain':>13} {'coord s secure':>14} {'coord x':>7}"
    )
    for n, dropout, plain, secure in split:
        pp, sp = (_median(runs, "party_cpu_s") * 1e3 / n for runs in (plain, secure))
        pc, sc = (_median(runs, "coordinator_cpu_s") for runs in (plain, secure))
        print(
            f"{n:>4} {dropout:>5.0%} {pp:>14.2f} {sp:>15.2f} {sp / pp:>7.2f} "
            f"{pc:>13.3f} {sc:>14.3f} {sc / pc:>7.2f}"
        )


def _median(runs: list[RoundCost], field: str) -> float:
    return float(np.median([getattr(r, field) for r in runs]))


def _load() -> str:
    """The 1/5/15-minute load averages: CPU ratios mean little on a loaded machine."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
