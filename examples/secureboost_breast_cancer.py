"""SecureBoost on breast cancer split FATE-style: guest = first 10 features + label, host = 20.

Run: .venv/bin/python examples/secureboost_breast_cancer.py [ckks|paillier] [n_trees]
"""

from __future__ import annotations

import sys
import tempfile
import time

from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedsilo.vertical.secureboost import (
    TreeParams,
    predict_secureboost,
    split_rows,
    train_plain,
    train_secureboost,
)


def main() -> None:
    scheme = sys.argv[1] if len(sys.argv) > 1 else "ckks"
    n_trees = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    params = TreeParams(n_trees=n_trees, max_depth=3, learning_rate=0.3, n_bins=32)
    started = time.perf_counter()
    result = train_secureboost(
        xtr[:, :10], ytr, {"host": xtr[:, 10:]}, params, scheme=scheme, paillier_bits=1024
    )
    seconds = time.perf_counter() - started
    proba = predict_secureboost(
        result.guest_model, xte[:, :10], {"host": xte[:, 10:]}, result.host_models
    )
    train, valid = split_rows(len(ytr), 0.0, 0)
    ref = train_plain([xtr[:, :10], xtr[:, 10:]], ytr, train, valid, params)
    ref_auc = roc_auc_score(yte, ref.predict_proba([xte[:, :10], xte[:, 10:]]))
    print(f"{scheme}: {seconds / n_trees:.1f} s/tree, test AUC {roc_auc_score(yte, proba):.4f}")
    print(f"centralized plaintext reference: test AUC {ref_auc:.4f}")
    with tempfile.TemporaryDirectory() as out:
        for party, path in result.save(out).items():
            print(f"model part of {party}: {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
