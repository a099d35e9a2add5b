"""Hetero (vertical) LR: seconds per epoch, CKKS vs Paillier vs plaintext.

    .venv/bin/python bench/vertical.py [--rows 50000] [--batch-size 4096]
        [--paillier-batches 1] [--key-bits 2048] [--skip-paillier-large]

Two workloads: breast cancer (FATE's split: guest 10 features + label, one host 20; all 569
rows, 80% train) and a ``make_classification`` set of ``--rows`` rows and 30 features split
guest 10 / host 10 / host 10 (two hosts). Each runs the real protocol in process (every
message encoded, guest-host payloads sealed, arbiter decrypting masked values). CKKS runs
whole epochs; Paillier on the large set runs ``--paillier-batches`` mini-batches and is
EXTRAPOLATED to an epoch (per-batch cost is linear in rows), which the output says. The
plaintext baseline is the same mini-batch Taylor-LR in numpy, no cryptography.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, make_classification

from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig, generate
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.hetero_lr import HeteroLrArbiter, HeteroLrParty, LrParams


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
        n: HeteroLrParty(n, p, y if n == "guest" else None)
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
    args = ap.parse_args()
    data = load_breast_cancer()
    report(
        "breast cancer (guest 10 + host 20)",
        _split(data.data, [10, 20]),
        data.target.astype(np.float64),
        64,
        args.key_bits,
        None,
        False,
    )
    x, y = make_classification(n_samples=args.rows, n_features=30, n_informative=12, random_state=0)
    report(
        f"make_classification {args.rows} rows, two hosts",
        _split(x, [10, 10, 10]),
        y.astype(np.float64),
        args.batch_size,
        args.key_bits,
        args.paillier_batches,
        args.skip_paillier_large,
    )


if __name__ == "__main__":
    main()
