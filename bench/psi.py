"""Time PSI row alignment (fedsilo.vertical.psi) on two sets of ``--ids`` IDs each.

    PYTHONPATH=src .venv/bin/python bench/psi.py [--ids 100000] [--batch-size 100000]

Prints seconds per protocol step and the total, the bytes of each message and the process's
peak RSS (``resource.getrusage``; client and server run in this one process); half of the
IDs are shared. 1M x 1M: ``--ids 1000000 --batch-size 1000000``.
"""

from __future__ import annotations

import argparse
import resource
import time

from fedsilo.vertical import PsiClient, PsiServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=100_000, help="IDs on each side")
    parser.add_argument("--batch-size", type=int, default=100_000)
    args = parser.parse_args()
    n, batch_size = args.ids, args.batch_size
    client_ids = [f"customer-{i:09d}" for i in range(n)]
    server_ids = [f"customer-{i:09d}" for i in range(n // 2, n + n // 2)]
    timings: dict[str, float] = {}

    start = time.perf_counter()
    client = PsiClient(client_ids, party="bank", batch_size=batch_size)
    server = PsiServer(server_ids, party="retailer", batch_size=batch_size)
    timings["normalize"] = time.perf_counter() - start

    def step(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        return out

    request = step("client.request", client.request)
    setup = step("server.setup_message", lambda: server.setup_message(client.num_elements))
    response = step("server.respond", lambda: server.respond(request))
    rows = step("client.intersect", lambda: client.intersect(setup, response))
    finish = step("client.finish_message", client.finish_message)
    server_rows = step("server.finish", lambda: server.finish(finish))
    assert len(rows) == server_rows.num_aligned == n - n // 2

    print(f"PSI {n} x {n}, batch_size={batch_size}, aligned={len(rows)}")
    sizes = {"request": request, "setup": setup, "response": response, "finish": finish}
    print(
        "  message bytes: "
        + " ".join(f"{k}={len(v):,}" for k, v in sizes.items())
        + f" total={sum(len(v) for v in sizes.values()):,}"
    )
    for name, seconds in timings.items():
        print(f"  {name:<22} {seconds:8.2f} s")
    print(f"  {'total':<22} {sum(timings.values()):8.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  peak RSS (client and server in one process): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
