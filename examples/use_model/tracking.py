"""Track a run in MLflow (a local file store, offline) and TensorBoard, then read it back.

Needs the tracking extra: pip install 'fedsilo[tracking]'   (`make` installs it)

Run: python examples/use_model/tracking.py [OUT_DIR]     (default runs/use_model)
The same from the shell:
    fedsilo simulate examples/hospitals_breast_cancer.toml --out runs/use_model/tracked \
        --mlflow file:runs/use_model/mlruns --tensorboard runs/use_model/tensorboard
Then browse: `mlflow ui --backend-store-uri file:runs/use_model/mlruns` (full mlflow) or
`tensorboard --logdir runs/use_model/tensorboard`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fedsilo
from fedsilo.tracking import with_tracking

JOB = Path(__file__).resolve().parents[1] / "hospitals_breast_cancer.toml"


def main(out: Path) -> None:
    uri = f"file:{(out / 'mlruns').resolve()}"
    job = with_tracking(fedsilo.load_job(JOB), mlflow=uri, tensorboard=out / "tensorboard")
    result = fedsilo.simulate(job)  # logs each round as it ends, then the files
    result.save(out / "tracked")
    assert result.tracking is not None
    print("tracked:", result.tracking)

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt in
    client = MlflowClient(tracking_uri=uri)
    run_id = result.tracking["mlflow"]["run_id"]
    for m in client.get_metric_history(run_id, "global/accuracy"):
        print(f"round {m.step:>2}  global accuracy {m.value:.4f}")
    print("artifacts:", [f.path for f in client.list_artifacts(run_id)])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/use_model"))
