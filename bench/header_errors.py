"""Wall time from launch to a header error, for a horizontal, a vertical and a query job.

    PYTHONPATH=src .venv/bin/python bench/header_errors.py [--quick] [--repeat 3] [--limit-s 5]

Writes small party files whose headers do not fit the job (horizontal: a party file without
the label column; vertical: a feature column the host's file lacks, and a host file holding
the guest's label; query: a declared column a party's file lacks), launches ``fedsilo simulate``
/ ``fedsilo query`` as a subprocess for each, checks that it exits with status 2 naming the
party, file and column, and prints the median wall time of ``--repeat`` launches against
``--limit-s`` (issue 12: under 5 s on an idle machine), with the interpreter's bare start-up
(``python -c pass``) and the CLI's import (``python -m fedsilo.cli --help``) as baselines
measured the same way. ``--quick``: one launch each. Exit status 1 if any case fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (CLI arguments, texts the error must contain)."""
    (tmp / "a.csv").write_text("age,income,default\n34,52000,no\n51,61000,yes\n")
    (tmp / "b.csv").write_text("age,income,target\n27,38000,no\n45,70000,yes\n")  # no 'default'
    (tmp / "horizontal.toml").write_text(
        'name = "h"\n[data]\nlabel = "default"\n'
        f'[[parties]]\nname = "a"\npath = "{tmp / "a.csv"}"\n'
        f'[[parties]]\nname = "b"\npath = "{tmp / "b.csv"}"\n'
    )
    (tmp / "guest.csv").write_text("id,y,x1\n1,0,0.5\n2,1,0.7\n")
    (tmp / "host.csv").write_text("id,x2,y\n1,3.0,0\n2,4.0,1\n")  # the guest's label column
    (tmp / "vertical.toml").write_text(
        'kind = "vertical"\nname = "v"\n'
        f'[[parties]]\nname = "bank"\npath = "{tmp / "guest.csv"}"\nlabel = "y"\n'
        f'[[parties]]\nname = "shop"\npath = "{tmp / "host.csv"}"\n'
    )
    (tmp / "vertical_feature.toml").write_text(
        'kind = "vertical"\nname = "v"\n'
        f'[[parties]]\nname = "bank"\npath = "{tmp / "guest.csv"}"\nlabel = "y"\n'
        f'[[parties]]\nname = "shop"\npath = "{tmp / "host2.csv"}"\nfeatures = ["x9"]\n'
    )
    (tmp / "host2.csv").write_text("id,x2\n1,3.0\n2,4.0\n")
    (tmp / "q0.csv").write_text("region,amount\nnorth,10\nsouth,20\n")
    (tmp / "q1.csv").write_text("area,amount\nnorth,10\nsouth,20\n")  # no 'region'
    (tmp / "query.toml").write_text(
        'kind = "analytics"\nname = "q"\ntable = "t"\n'
        f'[[parties]]\nname = "p0"\npath = "{tmp / "q0.csv"}"\n'
        f'[[parties]]\nname = "p1"\npath = "{tmp / "q1.csv"}"\n'
        '[columns.region]\ntype = "category"\ncategories = ["north", "south"]\n'
        '[columns.amount]\ntype = "number"\nlower = 0\nupper = 100\n'
        '[privacy]\nmechanism = "gaussian"\nepsilon = 1.0\ndelta = 1e-6\n'
    )
    sql = "SELECT region, COUNT(*) FROM t GROUP BY region"
    return {
        "horizontal: label column missing": (
            ["simulate", str(tmp / "horizontal.toml"), "--out", str(tmp / "run")],
            ["party 'b'", "b.csv", "label column 'default'"],
        ),
        "vertical: host holds the guest's label": (
            ["simulate", str(tmp / "vertical.toml"), "--out", str(tmp / "run")],
            ["party 'shop'", "host.csv", "'y'"],
        ),
        "vertical: unknown feature column": (
            ["simulate", str(tmp / "vertical_feature.toml"), "--out", str(tmp / "run")],
            ["party 'shop'", "host2.csv", "x9"],
        ),
        "query: declared column missing": (
            ["query", str(tmp / "query.toml"), sql, "--ledgers", str(tmp / "ledgers")],
            ["party 'p1'", "q1.csv", "region"],
        ),
    }


def launch(args: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall s, the child's CPU s, exit status, output)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    return wall, _children_cpu() - cpu_before, done.returncode, done.stdout + done.stderr


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one launch per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit-s", type=float, default=5.0)
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    cli = [sys.executable, "-m", "fedsilo.cli"]
    failed = False
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows: list[tuple[str, float, float, str]] = []
        for name, argv in (
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("fedsilo --help (CLI import)", [*cli, "--help"]),
        ):
            runs = [launch(argv, env) for _ in range(repeat)]
            wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
            rows.append((name, wall, cpu, "baseline"))
        for name, (cli_args, expect) in write_cases(tmp).items():
            walls, cpus, verdict = [], [], "PASS"
            for _ in range(repeat):
                wall, cpu, code, out = launch([*cli, *cli_args], env)
                walls.append(wall)
                cpus.append(cpu)
                flat = " ".join(out.split())
                missing = [t for t in expect if t not in flat]
                if code != 2 or missing:
                    verdict = f"FAIL (exit {code}, missing {missing}): {flat[-300:]}"
            wall = statistics.median(walls)
            if verdict == "PASS" and wall >= args.limit_s:
                verdict = f"FAIL (over {args.limit_s:g} s)"
            failed |= verdict != "PASS"
            rows.append((name, wall, statistics.median(cpus), verdict))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  wall s   CPU s  (median of {repeat})  verdict")
    for name, wall, cpu, verdict in rows:
        print(f"{name:<{width}}  {wall:6.2f}  {cpu:6.2f}                  {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
