"""Train the hospitals example, then score its central test rows with the saved model.

The model file carries its preprocessing plan and schema, so scoring needs only the run
directory and a file of rows (any column order; extra columns such as the label are ignored).
`fedsilo predict` on the test rows gives back the report's global accuracy and AUC exactly.

Run: python examples/use_model/predict.py [OUT_DIR]     (default runs/use_model)
The same from the shell:
    fedsilo simulate examples/hospitals_breast_cancer.toml --out runs/use_model/run
    fedsilo predict runs/use_model/run runs/use_model/test.csv --out predictions.csv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import fedsilo
from fedsilo.simulation import load_simulated_data
from fedsilo.training import classification_metrics

JOB = Path(__file__).resolve().parents[1] / "hospitals_breast_cancer.toml"


def main(out: Path) -> dict[str, float]:
    job = fedsilo.load_job(JOB)
    fedsilo.simulate(job).save(out / "run")
    test = load_simulated_data(job).test  # the simulation's central test split
    assert test is not None and test.table is not None
    test.table.to_csv(out / "test.csv", index=False)

    model = fedsilo.load_model(out / "run")
    rows = pd.read_csv(out / "test.csv")
    predictions = model.predictions(rows, source="test.csv")  # prediction, proba_<class>
    predictions.to_csv(out / "predictions.csv", index=False)

    y = np.array([model.classes.index(v) for v in rows["label"]])
    ours = classification_metrics(y, model.predict_proba(rows))
    reported = json.loads((out / "run" / "metrics.json").read_text())["final"]["global"]
    for key in ("accuracy", "auc"):
        print(f"{key}: predicted rows {ours[key]:.6f}, report {reported[key]:.6f}")
    print(f"predictions: {out / 'predictions.csv'}")
    return ours


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/use_model"))
