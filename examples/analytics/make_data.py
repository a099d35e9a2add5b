"""Write three banks' transaction tables (CSV), deterministic from a seed.

    python examples/analytics/make_data.py            # -> examples/analytics/data/bank_*.csv
    python examples/analytics/make_data.py --rows 5000 --seed 7 --out /tmp/banks

Columns: region (north/south/east/west), year (2023-2025), amount (log-normal, some above the
declared clipping bound), score (credit score, 300-850), age (18-90). Each bank has its own
regional mix and amount scale, so pooled and per-bank answers differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west"]
BANKS = {"bank_a": [0.55, 0.15, 0.15, 0.15], "bank_b": [0.1, 0.6, 0.2, 0.1], "bank_c": [0.25] * 4}


def make_bank(rng: np.random.Generator, rows: int, mix: list[float], scale: float) -> pd.DataFrame:
    age = rng.integers(18, 91, rows)
    score = np.clip(rng.normal(560 + 2.0 * (age - 50), 90, rows), 300, 850).round()
    amount = (rng.lognormal(4.5, 0.9, rows) * scale * (1 + (score - 560) / 2000)).round(2)
    return pd.DataFrame(
        {
            "region": rng.choice(REGIONS, rows, p=mix),
            "year": rng.choice([2023, 2024, 2025], rows, p=[0.3, 0.3, 0.4]),
            "amount": amount,
            "score": score.astype(int),
            "age": age,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per bank")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (bank, mix) in enumerate(BANKS.items()):
        rng = np.random.default_rng([args.seed, i])
        df = make_bank(rng, args.rows, mix, scale=1.0 + 0.3 * i)
        df.to_csv(args.out / f"{bank}.csv", index=False)
        print(f"wrote {args.out / f'{bank}.csv'} ({len(df)} rows)")


if __name__ == "__main__":
    main()
