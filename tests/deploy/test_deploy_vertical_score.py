"""Scoring new customers over real party processes (``kind = "vertical-score"``).

A TLS server and two party processes on 127.0.0.1 train a vertical model (`fedsilo submit`),
then a scoring job names that training job's id: each party loads its own saved part from its
own ``[vertical] models`` folder and its own ``[vertical] score_data`` file, PSI matches the
new customers, and the guest writes the scores at its site. They must equal what the same
parts give in process (exact for SecureBoost with Paillier, CKKS noise for hetero LR); the
server keeps only counts; a party whose part is missing fails the job naming itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fedsilo.errors import AdminCallError
from fedsilo.jobs import parse_job
from fedsilo.vertical.config import VerticalScoreJob
from fedsilo.vertical.scoring import simulate_vertical_score
from tests.deploy.harness import Deployment, deployment, job_done
from tests.deploy.test_deploy_vertical import LR_JOB, PARTIES, SB_JOB, _files, _run

pytestmark = pytest.mark.slow

SCORE_JOB = """kind = "vertical-score"
name = "new-customers"
run = "{run}"

[[parties]]
name = "bank"
id_column = "id"

[[parties]]
name = "provider"
id_column = "id"
"""


def _new_files(files: dict[str, Path], root: Path) -> dict[str, Path]:
    """Half of the training customers, reshuffled, plus 6 the provider does not know."""
    bank, provider = pd.read_csv(files["bank"]), pd.read_csv(files["provider"])
    shared = sorted(set(bank["id"]) & set(provider["id"]))[::2]
    new_bank = bank[bank["id"].isin(shared)].drop(columns="y").sample(frac=1.0, random_state=2)
    unknown = new_bank.head(6).assign(id=[f"NEW{i}" for i in range(6)])
    out = {"bank": root / "new_bank.csv", "provider": root / "new_provider.csv"}
    pd.concat([new_bank, unknown]).to_csv(out["bank"], index=False)
    provider[provider["id"].isin(shared)].to_csv(out["provider"], index=False)
    return out


def _in_process(
    root: Path, job_id: str, algorithm: str, new: dict[str, Path], server: Path
) -> pd.DataFrame:
    """The same parts (copied from the parties' folders) scored in process."""
    run = root / "copied" / job_id
    (run / "models").mkdir(parents=True)
    shutil.copy(server / job_id / "metrics.json", run / "metrics.json")
    suffix = ".json" if algorithm == "secureboost" else ".safetensors"
    for p in PARTIES:
        shutil.copy(root / f"models-{p}" / job_id / f"{p}{suffix}", run / "models")
    job = parse_job(
        {
            "kind": "vertical-score",
            "run": str(run),
            "parties": [{"name": p, "path": str(new[p])} for p in PARTIES],
        }
    )
    assert isinstance(job, VerticalScoreJob)
    paths = simulate_vertical_score(job).save(root / "copied" / f"{job_id}-scores")
    return pd.read_csv(paths["predictions"])


def _score(dep: Deployment, run: str) -> tuple[str, dict[str, Any]]:
    job_id = dep.submit(SCORE_JOB.format(run=run))
    dep.wait_status(job_done(job_id), timeout_s=300)
    return job_id, json.loads((dep.root / "server" / job_id / "score.json").read_text())


def test_new_customers_are_scored_over_party_processes(tmp_path: Path) -> None:
    files = _files(tmp_path)
    new = _new_files(files, tmp_path)
    server = tmp_path / "server"
    with deployment(tmp_path, parties=PARTIES) as dep:
        dep.make_pki()
        dep.write_server()
        for p in PARTIES:
            extra = (
                f'\n[vertical]\ndata = "{files[p]}"\nmodels = "{tmp_path / ("models-" + p)}"\n'
                f'score_data = "{new[p]}"\n'
            )
            dep.write_party(p, None, extra=extra)
        dep.start_server()
        for p in PARTIES:
            dep.start_party(p)
        dep.wait_status(lambda s: sum(p.online for p in s.parties) == 2, timeout_s=240)

        sb_id, _ = _run(dep, SB_JOB.replace("n_trees = 3", "n_trees = 2"))
        lr_id, _ = _run(dep, LR_JOB.replace("epochs = 2", "epochs = 1"))
        sb_score_id, sb_doc = _score(dep, sb_id)
        lr_score_id, lr_doc = _score(dep, lr_id)

        # A scoring job naming no training run of this server is refused at submission.
        with pytest.raises(AdminCallError, match=r"key 'run': .*nope.*run the training job"):
            dep.submit(SCORE_JOB.format(run="nope"))

        # The provider loses its SecureBoost part: the scoring job fails naming it.
        part = tmp_path / "models-provider" / sb_id / "provider.json"
        part.rename(part.with_suffix(".moved"))
        failing = dep.submit(SCORE_JOB.format(run=sb_id))

        def failed(reply: Any) -> bool:
            job = next(j for j in reply.jobs if j.job_id == failing)
            return bool(job.status == "failed")

        status = dep.wait_status(failed, timeout_s=120)
        part.with_suffix(".moved").rename(part)
    error = next(j for j in status.jobs if j.job_id == failing).error
    assert "party 'provider' has no saved model part of training run" in error, error

    shared = len(pd.read_csv(new["provider"]))
    for job_id, doc, train_id, algorithm in (
        (sb_score_id, sb_doc, sb_id, "secureboost"),
        (lr_score_id, lr_doc, lr_id, "hetero_lr"),
    ):
        # the server: counts and where the guest keeps the scores, never a score
        assert sorted(p.name for p in (server / job_id).iterdir()) == ["score.json"]
        assert doc["alignment"]["aligned"] == shared
        assert doc["alignment"]["unmatched"] == {"bank": 6, "provider": 0}
        kept = tmp_path / "models-bank" / job_id / "predictions.csv"
        assert doc["predictions"]["path"] == str(kept)
        assert doc["predictions"]["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
        assert not (tmp_path / "models-provider" / job_id).exists()  # hosts keep no scores
        deployed = pd.read_csv(kept)
        local = _in_process(tmp_path, train_id, algorithm, new, server)
        assert len(deployed) == shared and not deployed["id"].str.startswith("NEW").any()
        merged = deployed.merge(local, on="id", suffixes=("_grpc", "_local"))
        assert len(merged) == shared
        diff = (merged["score_grpc"] - merged["score_local"]).abs().max()
        if algorithm == "secureboost":
            assert diff == 0.0  # trees and thresholds: exact
        else:
            assert diff < 1e-5  # fresh CKKS key and noise each run
