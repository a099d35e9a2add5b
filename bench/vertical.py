"""Vertical learning: hetero-LR seconds per epoch and SecureBoost seconds per tree,
CKKS vs Paillier vs plaintext.

    PYTHONPATH=src .venv/bin/python bench/vertical.py [--rows 50000] [--batch-size 4096]
        [--paillier-batches 1] [--key-bits 2048] [--skip-paillier-large] [--only lr|sb]
        [--tree-depth 3]

Two workloads: breast cancer (FATE's split: guest 10 features + label, one host 20; all 569
rows, 80% train) and a ``make_classification`` set of ``--rows`` rows and 30 features split
guest 10 / host 10 / host 10 (two hosts). Each runs the real protocol in process (every
message encoded, guest-host payloads sealed, arbiter decrypting masked values). CKKS runs
whole epochs; Paillier on the large set runs ``--paillier-batches`` mini-batches and is
EXTRAPOLATED to an epoch (per-batch cost is linear in rows), which the output says. The
plaintext baseline is the same mini-batch Taylor-LR in numpy, no cryptography.

SecureBoost (``--tree-depth``, 32 bins, learning rate 0.3) on the same two workloads: wall
seconds per tree measured at a host (from the first host task of a tree to the first of the
next; key generation excluded), CKKS and Paillier, against the plaintext reference of the same
algorithm (``train_plain``: same bins, same grower, numpy histograms) timed in this process.
Breast cancer: 2 trees; the large set: 1 tree (a whole tree is measured, nothing extrapolated).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from typing import Any

import numpy as np
from _sbtools import Served, TreeClock, train_in_process
from sklearn.datasets import load_breast_cancer, make_classification

from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig, generate
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.hetero_lr import HeteroLrArbiter, HeteroLrParty, LrParams
from fedsilo.vertical.secureboost import TreeParams, split_rows, train_plain


def _split(x: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    edges = np.cumsum([0, *widths])
    return [x[:, a:b] for a, b in itertools.pairwise(edges)]


def plaintext_epoch(parts: list[np.ndarray], y: np.ndarray, train: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    xs = [(p - p[train].mean(0)) / p[train].std(0) for p in parts]
    xs[0] = np.hstack([xs[0], np.ones((len(y), 1))])
    w = [np.zeros(x.shape[1]) for x in xs]
    order = train[np.random.default_rng(0).permutation(len(train))]
    for s in range(0, len(order), batch):
        rows = order[s : s + batch]
        z = sum(x[rows] @ wi for x, wi in zip(xs, w, strict=True))
        d = 0.25 * z + 0.5 - y[rows]
        w = [
            wi - 0.1 * (x[rows].T @ d / len(rows) + 0.01 * wi) for x, wi in zip(xs, w, strict=True)
        ]
    return time.perf_counter() - started


def he_epoch(
    scheme: HeScheme,
    parts: list[np.ndarray],
    y: np.ndarray,
    train: np.ndarray,
    batch: int,
    key_bits: int,
    batches: int | None,
) -> tuple[float, bool]:
    """Seconds per epoch; ``batches`` set = measure that many batches and extrapolate."""
    names = ["guest", *[f"host{k}" for k in range(1, len(parts))]]
    parties = {
        n: Served(n, HeteroLrParty(n, p, y if n == "guest" else None).routes)
        for n, p in zip(names, parts, strict=True)
    }
    config = PaillierConfig(key_bits=key_bits) if scheme is HeScheme.PAILLIER else CkksConfig()
    secret = generate(scheme, config)
    arbiter = HeteroLrArbiter(
        "bench",
        InProcessTransport(parties),
        secret,
        guest="guest",
        hosts=names[1:],
        params=LrParams(epochs=1, batch_size=batch, learning_rate=0.1),
        seed=0,
    )
    test = np.setdiff1d(np.arange(len(y)), train)
    arbiter.setup(train, test)
    per_epoch = math.ceil(len(train) / batch)
    if batches is None or batches >= per_epoch:
        return arbiter.train().epoch_seconds[0], False
    return arbiter.run_batches(batches) * per_epoch / batches, True


def plain_tree(parts: list[np.ndarray], y: np.ndarray, params: TreeParams) -> float:
    """Seconds per tree of the plaintext reference (same algorithm, no cryptography)."""
    train, valid = split_rows(len(y), 0.0, 0)
    started = time.perf_counter()
    train_plain(parts, y, train, valid, params)
    return (time.perf_counter() - started) / params.n_trees


def he_tree(
    scheme: HeScheme, parts: list[np.ndarray], y: np.ndarray, params: TreeParams, key_bits: int
) -> tuple[float, float]:
    """(median wall seconds per tree at the first host, CPU seconds per tree of the process)."""
    clock: dict[str, TreeClock] = {}

    def wrap(handler: Any) -> TreeClock:
        clock["h"] = TreeClock(handler, verbose=False)
        return clock["h"]

    hosts = {f"host{k}": p for k, p in enumerate(parts[1:], 1)}
    cpu = time.process_time()
    train_in_process(
        parts[0], y, hosts, params, scheme=scheme, paillier_bits=key_bits, wrap={"host1": wrap}
    )
    clock["h"].stop()
    cpu = (time.process_time() - cpu) / params.n_trees
    return float(np.median(clock["h"].seconds_per_tree())), cpu


def report_trees(
    title: str,
    parts: list[np.ndarray],
    y: np.ndarray,
    trees: int,
    depth: int,
    key_bits: int,
    skip_paillier: bool,
) -> None:
    train = np.sort(np.random.default_rng(1).permutation(len(y))[: int(0.8 * len(y))])
    params = TreeParams(n_trees=trees, max_depth=depth, learning_rate=0.3, n_bins=32)
    xs, yt = [p[train] for p in parts], y[train]
    plain = plain_tree(xs, yt, params)
    print(
        f"\n{title}: SecureBoost, {len(train)} training rows, {trees} tree(s) of depth {depth}, "
        f"parties {[p.shape[1] for p in parts]} features",
        flush=True,
    )
    print(f"  plaintext reference (numpy)  : {plain:10.3f} s/tree", flush=True)
    runs = [(HeScheme.CKKS, "CKKS (N=8192)               ")]
    if not skip_paillier:
        runs.append((HeScheme.PAILLIER, f"Paillier ({key_bits}-bit)         "))
    walls = {}
    for scheme, label in runs:
        wall, cpu = he_tree(scheme, xs, yt, params, key_bits)
        walls[scheme] = wall
        print(
            f"  {label}: {wall:10.2f} s/tree wall ({cpu:.2f} CPU s/tree; "
            f"{wall / plain:,.0f}x plaintext)",
            flush=True,
        )
    if len(walls) == 2:
        ratio = walls[HeScheme.PAILLIER] / walls[HeScheme.CKKS]
        print(f"  Paillier / CKKS per tree     : {ratio:10.1f}x", flush=True)


def report(
    title: str,
    parts: list[np.ndarray],
    y: np.ndarray,
    batch: int,
    key_bits: int,
    paillier_batches: int | None,
    skip_paillier: bool,
) -> None:
    train = np.sort(np.random.default_rng(1).permutation(len(y))[: int(0.8 * len(y))])
    plain = plaintext_epoch(parts, y, train, batch)
    ckks, _ = he_epoch(HeScheme.CKKS, parts, y, train, batch, key_bits, None)
    print(
        f"\n{title}: {len(train)} training rows, batch {batch}, parties "
        f"{[p.shape[1] for p in parts]} features"
    )
    print(f"  plaintext (numpy, no crypto): {plain:10.3f} s/epoch")
    print(f"  CKKS (N=8192)               : {ckks:10.2f} s/epoch  ({ckks / plain:,.0f}x plaintext)")
    if skip_paillier:
        return
    pail, extrapolated = he_epoch(
        HeScheme.PAILLIER, parts, y, train, batch, key_bits, paillier_batches
    )
    note = f" (EXTRAPOLATED from {paillier_batches} batch(es))" if extrapolated else ""
    print(f"  Paillier ({key_bits}-bit)         : {pail:10.2f} s/epoch{note}")
    print(f"  Paillier / CKKS per epoch    : {pail / ckks:10.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--paillier-batches", type=int, default=1)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--skip-paillier-large", action="store_true")
    ap.add_argument("--only", choices=("lr", "sb"), help="only hetero LR or only SecureBoost")
    ap.add_argument("--tree-depth", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true", help="breast cancer only")
    args = ap.parse_args()
    data = load_breast_cancer()
    bc_parts, bc_y = _split(data.data, [10, 20]), data.target.astype(np.float64)
    x, y = make_classification(n_samples=args.rows, n_features=30, n_informative=12, random_state=0)
    big_parts, big_y = _split(x, [10, 10, 10]), y.astype(np.float64)
    big = f"make_classification {args.rows} rows, two hosts"
    if args.only != "sb":
        report("breast cancer (guest 10 + host 20)", bc_parts, bc_y, 64, args.key_bits, None, False)
        if not args.skip_large:
            report(
                big,
                big_parts,
                big_y,
                args.batch_size,
                args.key_bits,
                args.paillier_batches,
                args.skip_paillier_large,
            )
    if args.only != "lr":
        bc = "breast cancer (guest 10 + host 20)"
        report_trees(bc, bc_parts, bc_y, 2, args.tree_depth, args.key_bits, False)
        if not args.skip_large:
            report_trees(
                big, big_parts, big_y, 1, args.tree_depth, args.key_bits, args.skip_paillier_large
            )


if __name__ == "__main__":
    main()
