"""fedsilo against Flower on the same tasks: seconds per round, process wall, memory, accuracy.

Flower goes into its own virtualenv, torch first (so pip does not pull another torch):

    python3.11 -m venv /tmp/flwr && /tmp/flwr/bin/pip install torch==2.13.0 \\
        && /tmp/flwr/bin/pip install 'flwr[simulation]' mlxtend scikit-learn

then, from the repository root:

    .venv/bin/python bench/vs_flower.py --flower-python /tmp/flwr/bin/python           # 20 rounds, 3 repeats
    .venv/bin/python bench/vs_flower.py --flower-python /tmp/flwr/bin/python --quick   # 2 rounds, 1 repeat

Without ``--flower-python`` Flower runs under this interpreter if it can import ``flwr``;
otherwise the script says so and exits 0 (a skip, not a failure).

Tasks (epochs 1, batch 32, SGD lr 0.05, iid, 20 % central test split, FedAvg): breast-cancer
MLP 30-32-2 with 3 parties; mnist-5k MLP 784-128-10 with 10 and with 100 parties, every party
every round; logistic regression on synthetic data (scikit-learn ``make_classification``, 20
features, 60 rows per party) with 1,000 parties, 10 % per round. Both frameworks train on the
same rows from the same initial weights: this script computes each party's training rows with
fedsilo's own setup (its partition, preprocessing and held-out split) and hands them to Flower
(``bench/flower_runner.py``) in an ``.npz``. fedsilo runs the job as a user would
(``fedsilo.simulate`` on the job dict, default ``[simulation]``: one torch thread per party,
workers = cores, vectorized from 8 parties per round), evaluating the global model on the
test split every round and the parties once, at the end (``evaluation.every = rounds``);
Flower evaluates the global model on the same test split every round (``evaluate_fn``), its
clients at one torch thread and one CPU each.

Each run is its own process; Flower and fedsilo alternate (F S, then S F, ...); medians over
repeats. Printed per task: seconds per round (median over rounds), process wall (start to
exit, imports and data loading included), peak RSS (sum over the process tree, sampled every
0.1 s: Ray's workers count for Flower), final test accuracy; then the ratios Flower/fedsilo.
The load average is printed before and after: numbers taken on a busy machine mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Task:
    name: str
    job: dict[str, Any]
    synthetic_rows: int = 0  # > 0: data.path is a synthetic CSV of this many rows


def tasks(rounds: int, quick: bool) -> list[Task]:
    def job(name: str, **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "name": name,
            "seed": 0,
            "rounds": rounds,
            "training": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
            "selection": {"fraction": 1.0, "min_parties": 2},
            "evaluation": {"every": rounds},
        }
        return base | over

    many = 100 if quick else 1000
    return [
        Task(
            "breast-cancer MLP 30-32-2, 3 parties",
            job(
                "bc3",
                data={"dataset": "breast-cancer", "num_parties": 3, "partition": "iid"},
                model={"name": "mlp", "hidden": [32]},
            ),
        ),
        Task(
            "mnist-5k MLP 784-128-10, 10 parties",
            job(
                "mnist10",
                data={"dataset": "mnist-5k", "num_parties": 10, "partition": "iid"},
                model={"name": "mlp", "hidden": [128]},
            ),
        ),
        Task(
            "mnist-5k MLP 784-128-10, 100 parties",
            job(
                "mnist100",
                data={"dataset": "mnist-5k", "num_parties": 100, "partition": "iid"},
                model={"name": "mlp", "hidden": [128]},
            ),
        ),
        Task(
            f"synthetic logreg, {many:,} parties, 10 % per round",
            job(
                f"logreg{many}",
                data={"label": "label", "num_parties": many, "partition": "iid"},
                model={"name": "logreg"},
                selection={"fraction": 0.1, "min_parties": 2},
            ),
            synthetic_rows=60 * many,
        ),
    ]


# -- the process tree's memory -------------------------------------------------------------
def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * PAGE
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


@dataclass
class Run:
    s_per_round: float
    accuracy: float
    wall_s: float
    peak_rss: int
    extra: dict[str, Any] = field(default_factory=dict)


def measured(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; its last stdout line is JSON with s_per_round and accuracy."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-4000:])
        raise SystemExit(f"{cmd[1]} failed with exit code {proc.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return Run(result.pop("s_per_round"), result.pop("accuracy"), wall, peak, result)


# -- fedsilo's side ----------------------------------------------------------------------------
def run_fedsilo(job_file: str) -> None:
    """In a child process: the job as a user runs it; one JSON line out."""
    from fedsilo.simulation import simulate

    result = simulate(json.loads(Path(job_file).read_text()))
    durations = [r.duration_s for r in result.history]
    print(
        json.dumps(
            {
                "s_per_round": statistics.median(durations),
                "accuracy": result.final_global["accuracy"],
            }
        )
    )


def prepare(task: Task, workdir: Path) -> tuple[Path, Path, Path]:
    """The job file for fedsilo, and the same parties' rows + settings for Flower."""
    from fedsilo.config import parse_job
    from fedsilo.models import build_model, get_params
    from fedsilo.runtime.party import PartyAgent
    from fedsilo.runtime.setup import prepare_parties
    from fedsilo.runtime.transport import InProcessTransport
    from fedsilo.simulation import TestSetEvaluator, load_simulated_data, party_rows

    job_dict = dict(task.job)
    if task.synthetic_rows:
        import pandas as pd
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=task.synthetic_rows, n_features=20, n_informative=10, random_state=0
        )
        table = pd.DataFrame(x, columns=[f"x{i}" for i in range(20)]).assign(label=y)
        csv = workdir / f"{task.job['name']}.csv"
        table.to_csv(csv, index=False)
        job_dict["data"] = job_dict["data"] | {"path": str(csv)}
    job = parse_job(job_dict, source="bench")
    sim = load_simulated_data(job)
    agents = {name: PartyAgent(name, rows) for name, rows in sim.parties.items()}
    setup = prepare_parties(InProcessTransport(agents), job)
    assert sim.test is not None
    evaluator = TestSetEvaluator(sim.test)
    evaluator.prepare(setup)
    x_test, y_test = evaluator.features_and_labels
    arrays: dict[str, np.ndarray] = {"x_test": x_test, "y_test": y_test}
    for i, ((x, y), _) in enumerate(party_rows(job, sim, setup)):
        arrays[f"x{i}"], arrays[f"y{i}"] = x.reshape(len(x), -1), y
    init = list(get_params(build_model(setup.model_spec, seed=job.seed)).values())
    arrays |= {f"p{i}": w for i, w in enumerate(init)}
    npz = workdir / f"{job.name}.npz"
    np.savez(npz, **arrays)
    spec = setup.model_spec
    flower_cfg = {
        "model": {
            "input_dim": int(np.prod(spec.input_shape)),
            "hidden": list(spec.hidden) if spec.name == "mlp" else [],
            "num_classes": spec.num_classes,
        },
        "num_parties": len(setup.parties),
        "num_params": len(init),
        "rounds": job.rounds,
        "fraction": job.selection.fraction,
        "epochs": job.training.epochs,
        "batch_size": job.training.batch_size,
        "learning_rate": job.training.learning_rate,
    }
    flower_json = workdir / f"{job.name}.flower.json"
    flower_json.write_text(json.dumps(flower_cfg))
    job_file = workdir / f"{job.name}.job.json"
    job_file.write_text(json.dumps(job_dict))
    return job_file, npz, flower_json


def flower_python(given: str | None) -> str | None:
    if given:
        return given
    try:
        import flwr  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--run-fedsilo":
        run_fedsilo(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flower-python", help="python of the virtualenv Flower is installed in")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 repeat, 100 logreg parties")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--only", help="run the tasks whose name contains this text")
    args = ap.parse_args()
    python = flower_python(args.flower_python)
    if python is None:
        print(
            "SKIP: flwr is not importable here and --flower-python was not given. Install "
            "Flower into its own virtualenv (see this file's docstring) and pass its python."
        )
        return
    rounds = args.rounds or (2 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 3)
    note = "  (quick: checks the bench runs; its timings are not results)" if args.quick else ""
    print(f"load average before: {os.getloadavg()}{note}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedsilo-vs-flower-") as tmp:
        for task in tasks(rounds, args.quick):
            if args.only and args.only not in task.name:
                continue
            job_file, npz, flower_json = prepare(task, Path(tmp))
            ours = [sys.executable, __file__, "--run-fedsilo", str(job_file)]
            theirs = [python, str(HERE / "flower_runner.py"), str(npz), str(flower_json)]
            flower, fedsilo = [], []
            for r in range(repeats):
                order = [(theirs, flower), (ours, fedsilo)]
                for cmd, into in order if r % 2 == 0 else order[::-1]:
                    into.append(measured(cmd))
            rows.append((task.name, flower, fedsilo))
            _print_row(task.name, flower, fedsilo)
    print(f"load average after: {os.getloadavg()}")
    print("\nsummary (Flower / fedsilo; accuracy difference in points, fedsilo - Flower)")
    for name, flower, fedsilo in rows:
        _print_row(name, flower, fedsilo)


def _median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def _print_row(name: str, flower: list[Run], fedsilo: list[Run]) -> None:
    f_round, s_round = _median(flower, "s_per_round"), _median(fedsilo, "s_per_round")
    f_wall, s_wall = _median(flower, "wall_s"), _median(fedsilo, "wall_s")
    f_rss, s_rss = _median(flower, "peak_rss") / 2**20, _median(fedsilo, "peak_rss") / 2**20
    f_acc, s_acc = _median(flower, "accuracy"), _median(fedsilo, "accuracy")
    print(
        f"{name}: s/round {f_round:.3f} / {s_round:.3f} ({_ratio(f_round, s_round)}); "
        f"wall {f_wall:.1f} / {s_wall:.1f} s ({_ratio(f_wall, s_wall)}); "
        f"peak RSS {f_rss:.0f} / {s_rss:.0f} MB (fedsilo {s_rss / f_rss:.2f}x); "
        f"accuracy {f_acc:.4f} / {s_acc:.4f} ({100 * (s_acc - f_acc):+.1f} points)",
        flush=True,
    )


if __name__ == "__main__":
    main()
