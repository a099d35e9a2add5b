"""Paillier vs CKKS: seconds to encrypt, compute X^T g, and decrypt.

    .venv/bin/python bench/he_backends.py [--rows 10000] [--cols 20] [--key-bits 2048]

For each backend: encrypt ``rows`` values (the guest's per-row gradients),
serialize + deserialize them (the trip to a host), ``matmul_plain`` with a
``rows x cols`` plaintext matrix (the host's X^T g), decrypt the ``cols``
results, and decrypt all ``rows`` values. Also prints the max absolute error
against numpy and the wire sizes, then the Paillier/CKKS time ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig, generate, load_public


def run(scheme: HeScheme, rows: int, cols: int, key_bits: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    g = rng.uniform(-1, 1, rows)
    x = rng.uniform(-10, 10, (rows, cols))
    config = PaillierConfig(key_bits=key_bits) if scheme is HeScheme.PAILLIER else CkksConfig()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    secret = generate(scheme, config)
    wire = secret.public().to_bytes()
    public = load_public(scheme, wire)
    timings["keygen+load_public"] = time.perf_counter() - t

    t = time.perf_counter()
    enc = public.encrypt(g)
    timings["encrypt"] = time.perf_counter() - t

    t = time.perf_counter()
    msg = public.serialize_vector(enc)
    enc = public.deserialize_vector(msg)
    timings["serialize+load vector"] = time.perf_counter() - t

    t = time.perf_counter()
    product = enc.matmul_plain(x)
    timings["matmul_plain"] = time.perf_counter() - t

    t = time.perf_counter()
    result_msg = public.serialize_vector(product)
    got = secret.decrypt(secret.deserialize_vector(result_msg))
    timings["ship+decrypt result"] = time.perf_counter() - t

    t = time.perf_counter()
    values = secret.decrypt(enc)
    timings["decrypt all rows"] = time.perf_counter() - t

    print(f"\n{scheme.value}  ({rows} rows x {cols} cols)")
    for name, seconds in timings.items():
        print(f"  {name:<24}{seconds:9.3f} s")
    print(f"  public context          {len(wire) / 1e6:9.3f} MB")
    print(f"  encrypted rows          {len(msg) / 1e6:9.3f} MB")
    print(f"  encrypted X^T g         {len(result_msg) / 1e6:9.3f} MB")
    print(f"  max |err| X^T g         {np.max(np.abs(got - g @ x)):9.2e}")
    print(f"  max |err| rows          {np.max(np.abs(values - g)):9.2e}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    args = parser.parse_args()
    paillier = run(HeScheme.PAILLIER, args.rows, args.cols, args.key_bits)
    ckks = run(HeScheme.CKKS, args.rows, args.cols, args.key_bits)
    print("\nPaillier / CKKS time ratio (higher = CKKS faster)")
    for name in ("encrypt", "matmul_plain", "decrypt all rows"):
        print(f"  {name:<24}{paillier[name] / ckks[name]:9.1f}x")


if __name__ == "__main__":
    main()
