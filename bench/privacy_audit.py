"""Empirical privacy audit: canary AUC and the one-run epsilon lower bound vs the accountant.

    .venv/bin/python bench/privacy_audit.py [--seeds 0 1] [--canaries 100] [--epsilons 8]

The job is examples/privacy_audit_digits.toml (digits, 3 parties, MLP, 20 rounds): once
without DP and once per target epsilon with record-level DP-SGD, each run auditing party-1
with label-flipped canaries (fedsilo.privacy_audit; Steinke, Nasr & Jagielski 2023). Prints a
Markdown table: test accuracy, attack AUC, TPR at 1% FPR, the empirical epsilon lower bound
(95% confidence, delta 1e-5) and the accountant's epsilon of the audited party, and whether
the bound stays at or below it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from fedsilo.config import load_job
from fedsilo.privacy_audit import AuditConfig, run_privacy_audit

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "examples" / "privacy_audit_digits.toml"


def variant(eps: float | None, seed: int) -> Any:
    job = load_job(JOB)
    dp = job.privacy.record_dp
    record_dp = (
        dp.model_copy(update={"enabled": False})
        if eps is None
        else dp.model_copy(update={"target_epsilon": eps})
    )
    privacy = job.privacy.model_copy(update={"record_dp": record_dp})
    return job.model_copy(update={"seed": seed, "privacy": privacy})


def run(eps: float | None, seeds: list[int], canaries: int) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        started = time.monotonic()
        result, audit = run_privacy_audit(variant(eps, seed), AuditConfig(canaries=canaries))
        rows.append(
            {
                "accuracy": result.final_global["accuracy"],
                "auc": audit.test.auc,
                "tpr": audit.test.tpr_at_low_fpr,
                "bound": audit.test.epsilon_lower_bound,
                "accountant": audit.accountant_epsilon,
                "consistent": audit.consistent,
                "seconds": time.monotonic() - started,
            }
        )
        print(f"  eps {eps} seed {seed}: {rows[-1]}", flush=True)
    return {"target": eps, "runs": rows}


def table(results: list[dict[str, Any]], seeds: list[int], canaries: int) -> str:
    out = [
        "| record DP | accuracy | canary AUC | TPR at 1% FPR | epsilon lower bound "
        "(95%) | accountant epsilon | bound <= accountant | s per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: |",
    ]
    for r in results:
        runs = r["runs"]

        def mean(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.mean(x[key] for x in runs)

        def spread(key: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [x[key] for x in runs]
            return f"{statistics.mean(values):.3f}" + (
                f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else ""
            )

        acct = mean("accountant")
        label = "off" if r["target"] is None else f"epsilon {r['target']:g}"
        out.append(
            f"| {label} | {mean('accuracy'):.3f} | {spread('auc')} | {spread('tpr')} | "
            f"{spread('bound')} | {'∞' if math.isinf(acct) else f'{acct:.3f}'} | "
            f"{'yes' if all(x['consistent'] for x in runs) else 'NO'} | {mean('seconds'):.0f} |"
        )
    out.append("")
    out.append(
        f"{canaries} canaries at party-1, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
        "ranges are min–max over seeds."
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--canaries", type=int, default=100)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[8.0])
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models; threads only contend on a shared machine
    results = [run(eps, args.seeds, args.canaries) for eps in (None, *args.epsilons)]
    print(table(results, args.seeds, args.canaries))


if __name__ == "__main__":
    main()
