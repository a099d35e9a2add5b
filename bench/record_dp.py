"""Record-level DP: accuracy against epsilon, next to the non-private run.

    .venv/bin/python bench/record_dp.py [--seeds 0 1 2] [--rounds 20] [--mnist]

Each hospital (breast-cancer, 3 parties, examples/hospitals_dp.toml) runs DP-SGD with the
noise multiplier that reaches the target epsilon (delta 1e-5) after the job's rounds; the
non-private run is the same job with record_dp off, in the same process. Prints a Markdown
table (mean accuracy and AUC over seeds, ratio to non-private) and saves
docs/record_dp_accuracy.png.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsilo.config import load_job, parse_job
from fedsilo.simulation import simulate

ROOT = Path(__file__).resolve().parents[1]
EPSILONS = (1.0, 3.0, 8.0)


def variant(base: dict[str, Any], eps: float | None, seed: int, rounds: int) -> dict[str, Any]:
    raw = {**base, "seed": seed, "rounds": rounds}
    privacy = dict(raw["privacy"])
    privacy["budget"] = {}
    if eps is None:
        privacy["record_dp"] = {"enabled": False}
    else:
        privacy["record_dp"] = {**privacy["record_dp"], "target_epsilon": eps}
    raw["privacy"] = privacy
    return raw


def run(name: str, base: dict[str, Any], seeds: list[int], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for eps in (None, *EPSILONS):
        acc, auc, spent, noise = [], [], [], []
        started = time.monotonic()
        for seed in seeds:
            result = simulate(parse_job(variant(base, eps, seed, rounds), source="bench"))
            acc.append(result.final_global["accuracy"])
            auc.append(result.final_global.get("auc", float("nan")))
            privacy = result.history[-1].privacy
            if privacy:
                spent.append(privacy["epsilon"])
                noise.extend(p["noise_multiplier"] for p in privacy["parties"].values())
        rows.append(
            {
                "data": name,
                "target": eps,
                "epsilon": max(spent) if spent else None,
                "noise": (min(noise), max(noise)) if noise else None,
                "accuracy": statistics.mean(acc),
                "accuracy_sd": statistics.pstdev(acc),
                "auc": statistics.mean(auc),
                "seconds": (time.monotonic() - started) / len(seeds),
            }
        )
    return rows


def table(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    out = [
        f"| data | epsilon (delta 1e-5) | noise multiplier | accuracy (mean ± sd, {len(seeds)} "
        "seeds) | AUC | accuracy / non-private | s per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        base = next(b for b in rows if b["data"] == r["data"] and b["target"] is None)
        eps = "∞ (non-private)" if r["epsilon"] is None else f"{r['epsilon']:.3f}"
        noise = "–" if r["noise"] is None else f"{r['noise'][0]:.2f}–{r['noise'][1]:.2f}"
        out.append(
            f"| {r['data']} | {eps} | {noise} | {r['accuracy']:.4f} ± {r['accuracy_sd']:.4f} | "
            f"{r['auc']:.4f} | {r['accuracy'] / base['accuracy']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    for name in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == name]
        base = next(r for r in mine if r["target"] is None)
        dp = [r for r in mine if r["target"] is not None]
        line = ax.errorbar(
            [r["target"] for r in dp],
            [r["accuracy"] for r in dp],
            yerr=[r["accuracy_sd"] for r in dp],
            marker="o",
            capsize=3,
            label=f"{name}: record-level DP",
        )
        ax.axhline(
            base["accuracy"], linestyle="--", color=line[0].get_color(), label=f"{name}: no DP"
        )
    ax.set_xscale("log")
    ax.set_xticks(EPSILONS, [f"{e:g}" for e in EPSILONS])
    ax.set_xlabel("epsilon per party (delta 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mnist", action="store_true", help="also mnist-5k (slow)")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "record_dp_accuracy.png")
    args = parser.parse_args()
    hospitals = load_job(ROOT / "examples" / "hospitals_dp.toml").model_dump(mode="json")
    rows = run("breast-cancer, 3 hospitals", hospitals, args.seeds, args.rounds)
    if args.mnist:
        mnist = load_job(ROOT / "examples" / "mnist_3orgs.toml").model_dump(mode="json")
        mnist["privacy"] = hospitals["privacy"]
        rows += run("mnist-5k, 3 orgs", mnist, args.seeds, args.rounds)
    print(table(rows, args.seeds))
    plot(rows, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
