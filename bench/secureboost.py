"""SecureBoost cost and accuracy (run: .venv/bin/python bench/secureboost.py [--full]).

Prints seconds per tree for both HE backends on breast cancer (guest 10 + host 20 features)
and on a synthetic 50,000-row set with 2 hosts (``--full`` only: minutes per tree), and
default_credit AUC of the 64-tree depth-6 model (plaintext reference = the same algorithm; the
federated run is exact for Paillier) next to UniFed's FATE / FedTree figures, plus the
federated seconds per tree measured on a few trees. Every ratio is against a baseline run in
this process (the plaintext reference on the same data).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fedsilo.vertical.secureboost import TreeParams, split_rows, train_plain, train_secureboost

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "default_credit"


def per_tree(xg, y, hosts, params, scheme, bits=2048):  # type: ignore[no-untyped-def]
    """CPU seconds per tree (the machine is shared: CPU time is steadier than wall time)."""
    started = time.process_time()
    train_secureboost(xg, y, hosts, params, scheme=scheme, paillier_bits=bits)
    return (time.process_time() - started) / params.n_trees


def plain_time(xs, y, params):  # type: ignore[no-untyped-def]
    train, valid = split_rows(len(y), 0.0, 0)
    started = time.process_time()
    model = train_plain(xs, y, train, valid, params)
    return (time.process_time() - started) / params.n_trees, model


def main() -> None:
    full = "--full" in sys.argv
    x, y = load_breast_cancer(return_X_y=True)
    params = TreeParams(n_trees=2, max_depth=3, learning_rate=0.3, n_bins=32)
    base, _ = plain_time([x[:, :10], x[:, 10:]], y, params)
    for scheme, bits in (("ckks", 0), ("paillier", 1024), ("paillier", 2048)):
        s = per_tree(x[:, :10], y, {"host": x[:, 10:]}, params, scheme, bits)
        print(
            f"breast_cancer {scheme}{bits or ''}: {s:.2f} CPU s/tree "
            f"(plaintext {base * 1e3:.1f} ms/tree, x{s / base:.0f})"
        )
    if full:
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(50_000, 30))
        ys = (xs[:, :5].sum(1) + xs[:, 10:15].sum(1) - xs[:, 20:25].sum(1) > 0).astype(float)
        p1 = TreeParams(n_trees=1, max_depth=3, n_bins=32)
        base, _ = plain_time([xs[:, :10], xs[:, 10:20], xs[:, 20:]], ys, p1)
        for scheme in ("ckks", "paillier"):
            s = per_tree(xs[:, :10], ys, {"h1": xs[:, 10:20], "h2": xs[:, 20:]}, p1, scheme)
            print(f"synthetic 50k x 2 hosts {scheme}: {s:.1f} s/tree (plaintext x{s / base:.0f})")
    if not DATA.exists():
        print(f"default_credit skipped: {DATA} not found")
        return
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    guest = guest.rename(columns={c: f"g_{c}" for c in guest.columns if c.startswith("x")})
    host = host.rename(columns={c: f"h_{c}" for c in host.columns if c.startswith("x")})
    df = guest.merge(host, on="id")
    xg = df[[c for c in df if c.startswith("g_")]].to_numpy(float)
    xh = df[[c for c in df if c.startswith("h_")]].to_numpy(float)
    yy = df["y"].to_numpy(float)
    order = np.random.default_rng(0).permutation(len(yy))
    cut = int(0.8 * len(yy))
    tr, te = order[:cut], order[cut:]
    p64 = TreeParams(n_trees=64, max_depth=6, learning_rate=0.3, n_bins=32)
    t0 = time.perf_counter()
    ref = train_plain([xg[tr], xh[tr]], yy[tr], *split_rows(len(tr), 0.0, 0), p64)
    secs = time.perf_counter() - t0
    auc_te = roc_auc_score(yy[te], ref.predict_proba([xg[te], xh[te]]))
    auc_tr = roc_auc_score(yy[tr], ref.predict_proba([xg[tr], xh[tr]]))
    hgb = HistGradientBoostingClassifier(
        max_iter=64,
        max_depth=6,
        learning_rate=0.3,
        max_bins=32,
        l2_regularization=1.0,
        min_samples_leaf=1,
        early_stopping=False,
    ).fit(np.hstack([xg[tr], xh[tr]]), yy[tr])
    auc_hgb = roc_auc_score(yy[te], hgb.predict_proba(np.hstack([xg[te], xh[te]]))[:, 1])
    print(
        f"default_credit 64 trees depth 6 (reference algorithm, {secs:.1f} s): held-out AUC "
        f"{auc_te:.3f}, train AUC {auc_tr:.3f}; sklearn HGB held-out {auc_hgb:.3f}; "
        "UniFed FATE SecureBoost 0.820 (2,800 s, 9.93 GiB), FedTree 0.817 (489 s)"
    )
    pt = TreeParams(n_trees=1, max_depth=6, learning_rate=0.3, n_bins=32)
    for scheme in ("ckks", "paillier") if full else ("ckks",):
        s = per_tree(xg[tr], yy[tr], {"host": xh[tr]}, pt, scheme)
        print(f"default_credit federated {scheme}: {s:.0f} s/tree -> ~{64 * s:.0f} s for 64 trees")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
