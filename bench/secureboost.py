"""SecureBoost cost and accuracy.

    PYTHONPATH=src .venv/bin/python bench/secureboost.py
    PYTHONPATH=src .venv/bin/python bench/secureboost.py --full [--trees 64] [--depth 6]
        [--learning-rate 0.3] [--scheme ckks] [--json out.json] [--report out.html]

Without ``--full``: CPU seconds per tree on breast cancer (guest 10 + host 20 features, depth
3) for CKKS, Paillier 1024 and Paillier 2048, against the plaintext reference of the same
algorithm (``train_plain``) timed in this process.

``--full``: default_credit (FATE's hetero split, PSI-aligned by ``id``, 80/20 split, seed 0),
the **federated** model (real protocol in process, every message encoded) with ``--trees``
trees of depth ``--depth`` (UniFed's 64 / 6 by default), then held-out and training-row AUC
of it, of the plaintext reference and of scikit-learn's ``HistGradientBoostingClassifier``
with the same trees, depth, learning rate, bins and λ; wall and CPU seconds, seconds per tree
(printed as it goes) and the process's peak RSS (``resource.getrusage``: all parties run in
this one process). UniFed scored its AUCs on the training rows: compare the *train* AUC with
its 0.820. Seconds per tree on the 50,000-row 2-host set are in bench/vertical.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import numpy as np
from _sbtools import DATA, train_in_process
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.metrics import binary_metrics
from fedsilo.vertical.runner import VerticalRunner
from fedsilo.vertical.sb_role import SecureBoostRole
from fedsilo.vertical.secureboost import Tree, TreeParams, split_rows, train_plain
from fedsilo.vertical.simulation import centralized_gbm


def per_tree(xg, y, hosts, params, scheme, bits=2048):  # type: ignore[no-untyped-def]
    """CPU seconds per tree (the machine is shared: CPU time is steadier than wall time)."""
    started = time.process_time()
    train_in_process(xg, y, hosts, params, scheme=scheme, paillier_bits=bits)
    return (time.process_time() - started) / params.n_trees


def plain_time(xs, y, params):  # type: ignore[no-untyped-def]
    train, valid = split_rows(len(y), 0.0, 0)
    started = time.process_time()
    model = train_plain(xs, y, train, valid, params)
    return (time.process_time() - started) / params.n_trees, model


def breast_cancer() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    params = TreeParams(n_trees=2, max_depth=3, learning_rate=0.3, n_bins=32)
    base, _ = plain_time([x[:, :10], x[:, 10:]], y, params)
    for scheme, bits in (("ckks", 0), ("paillier", 1024), ("paillier", 2048)):
        s = per_tree(x[:, :10], y, {"host": x[:, 10:]}, params, scheme, bits)
        print(
            f"breast_cancer {scheme}{bits or ''}: {s:.2f} CPU s/tree "
            f"(plaintext {base * 1e3:.1f} ms/tree, x{s / base:.0f})"
        )


def full(args: argparse.Namespace) -> dict[str, Any]:
    job = parse_vertical_job(
        {
            "kind": "vertical",
            "name": "default_credit_secureboost",
            "algorithm": "secureboost",
            "seed": 0,
            "test_fraction": 0.2,
            "parties": [
                {
                    "name": "guest",
                    "path": str(DATA / "default_credit_hetero_guest.csv"),
                    "label": "y",
                },
                {"name": "host", "path": str(DATA / "default_credit_hetero_host.csv")},
            ],
            "he": {"scheme": args.scheme},
            "secureboost": {
                "n_trees": args.trees,
                "max_depth": args.depth,
                "learning_rate": args.learning_rate,
                "n_bins": 32,
            },
        }
    )
    params = job.secureboost.params()
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    runner = VerticalRunner(
        job,
        InProcessTransport(agents),
        timeout_s=24 * 3600.0,
        on_tree=lambda t, s: print(f"    tree {t}: {s:.1f} s", flush=True),
    )
    alignment = runner.align()
    tr, te = alignment.train, alignment.test
    guest, host = agents["guest"].aligned, agents["host"].aligned
    assert guest is not None and host is not None and guest.labels is not None
    xg, xh, y = guest.features, host.features, guest.labels
    print(
        f"default_credit: {len(tr)} training rows, {len(te)} held out (PSI-aligned); guest "
        f"{xg.shape[1]} + host {xh.shape[1]} features; {params.n_trees} trees, depth "
        f"{params.max_depth}, learning rate {params.learning_rate}, {args.scheme}",
        flush=True,
    )
    out: dict[str, Any] = {"params": params.__dict__, "scheme": args.scheme, "train_rows": len(tr)}

    t0 = time.perf_counter()
    ref = train_plain([xg[tr], xh[tr]], y[tr], *split_rows(len(tr), 0.0, 0), params)
    out["plain_seconds"] = time.perf_counter() - t0
    out["plain_test_auc"] = roc_auc_score(y[te], ref.predict_proba([xg[te], xh[te]]))
    out["plain_train_auc"] = roc_auc_score(y[tr], ref.predict_proba([xg[tr], xh[tr]]))
    t0 = time.perf_counter()
    gbm = centralized_gbm(params).fit(np.hstack([xg[tr], xh[tr]]), y[tr])
    out["gbm_seconds"] = time.perf_counter() - t0
    gbm_te = gbm.predict_proba(np.hstack([xg[te], xh[te]]))[:, 1]
    out["gbm_test"] = binary_metrics(y[te], gbm_te)
    out["gbm_test_auc"] = out["gbm_test"]["auc"]
    out["gbm_train_auc"] = roc_auc_score(
        y[tr], gbm.predict_proba(np.hstack([xg[tr], xh[tr]]))[:, 1]
    )
    print(
        f"  plaintext reference ({out['plain_seconds']:.1f} s): held-out AUC "
        f"{out['plain_test_auc']:.4f}, train AUC {out['plain_train_auc']:.4f}\n"
        f"  sklearn HistGradientBoosting ({out['gbm_seconds']:.1f} s): held-out AUC "
        f"{out['gbm_test_auc']:.4f}, train AUC {out['gbm_train_auc']:.4f}\n"
        "  federated, per tree:",
        flush=True,
    )

    wall0, cpu0 = time.perf_counter(), time.process_time()
    outcome = runner.train(alignment)  # training and scoring, after the PSI above
    out["train_wall_seconds"] = time.perf_counter() - wall0
    out["train_cpu_seconds"] = time.process_time() - cpu0
    out["seconds_per_tree"] = outcome.history["seconds_per_tree"]
    out["test"], out["train"] = outcome.test, outcome.train
    out["train_loss_per_tree"] = outcome.history["train_loss_per_tree"]
    role = agents["guest"].role
    assert isinstance(role, SecureBoostRole)
    trees = [Tree.from_json(t) for t in role.model()["trees"]]
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    same = sum(
        (a.left, a.right, a.party, a.feature, a.bin) == (b.left, b.right, b.party, b.feature, b.bin)
        for a, b in zip(trees, ref.outcome.trees, strict=True)
    )
    out["trees_same_splits_as_reference"] = same
    print(
        f"default_credit federated {args.scheme}, {params.n_trees} trees depth "
        f"{params.max_depth}: held-out AUC {out['test']['auc']:.4f}, train AUC "
        f"{out['train']['auc']:.4f} (sklearn HGB held-out {out['gbm_test_auc']:.4f}, train "
        f"{out['gbm_train_auc']:.4f}; plaintext reference held-out {out['plain_test_auc']:.4f}, "
        f"train {out['plain_train_auc']:.4f})\n"
        f"  training {out['train_wall_seconds']:.0f} s wall, {out['train_cpu_seconds']:.0f} s "
        f"CPU with the scoring of all {len(te) + len(tr)} rows; "
        f"{np.median(out['seconds_per_tree']):.1f} s per tree (median); peak RSS "
        f"{out['peak_rss_gib']:.2f} GiB; trees with the reference's splits: {same} of "
        f"{params.n_trees}\n"
        f"  vs plaintext reference: x{out['train_wall_seconds'] / out['plain_seconds']:.0f} "
        "wall\n  UniFed (scored on training rows): FATE SecureBoost AUC 0.820, 2,800 s, "
        "9.93 GiB; FedTree 0.817, 489 s",
        flush=True,
    )
    if args.report:
        from fedsilo.vertical.report import render_report
        from fedsilo.vertical.result import VerticalResult

        # The job's own result document (metrics.json's schema), as `fedsilo simulate` writes.
        result = VerticalResult(
            job, outcome, out["gbm_test"], wall_time_s=out["train_wall_seconds"]
        )
        doc = result.metrics_json()
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(render_report(doc))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="default_credit federated run")
    ap.add_argument("--trees", type=int, default=64)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--learning-rate", type=float, default=0.3)
    ap.add_argument("--scheme", choices=("ckks", "paillier"), default="ckks")
    ap.add_argument("--json", help="write the --full figures to this file")
    ap.add_argument("--report", help="write the --full run's HTML report (render_report)")
    args = ap.parse_args()
    if not args.full:
        breast_cancer()
        return
    if not DATA.exists():
        print(f"default_credit skipped: {DATA} not found")
        return
    out = full(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
