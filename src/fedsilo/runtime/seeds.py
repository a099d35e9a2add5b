"""Deterministic seeds: every random choice in a job derives from the job seed."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(job_seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed for ``purpose`` (e.g. "fit") at ``indices`` (e.g. round, party)."""
    tag = zlib.crc32(purpose.encode())
    state = np.random.SeedSequence([job_seed, tag, *indices]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def fit_seed(job_seed: int, rnd: int, attempt: int, party_index: int) -> int:
    """The seed a party trains with in ``rnd`` at ``attempt`` (0 = first try).

    A retried round trains from fresh seeds: with the first try's seeds every party would
    train the identical update again, and two sums over different survivors would differ by
    exactly one party's update. The first try keeps the seed earlier versions used.
    """
    if attempt == 0:
        return derive_seed(job_seed, "fit", rnd, party_index)
    return derive_seed(job_seed, "fit-retry", rnd, attempt, party_index)


def holdout_seed(job_seed: int, party_index: int) -> int:
    """Seed of a party's train/held-out split; ``party_index`` in sorted party order.

    The party splits its own rows with it at setup, and the simulation's pooled baseline
    splits the same rows again with it, so both see the same training rows.
    """
    return derive_seed(job_seed, "holdout", party_index)
