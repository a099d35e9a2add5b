"""Scoring new customers with a trained run's saved parts (``kind = "vertical-score"``).

Acceptance: for customers that were in the training job's held-out set, the scoring job's
scores equal the training job's (exactly with Paillier hetero LR and SecureBoost, within CKKS
noise with CKKS); customers unknown to a host are not scored and are counted; a party without
its saved part, a coordinator that swaps the roles, a forged part and a guest's lying count
are refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from fedsilo.errors import (
    ConfigError,
    DataError,
    FedsiloError,
    MissingValueError,
    ProtocolError,
    RoundFailedError,
)
from fedsilo.jobs import load_job, parse_job
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import VerticalScoreJob
from fedsilo.vertical.hetero_lr.party import LrPart
from fedsilo.vertical.result import VerticalResult
from fedsilo.vertical.sb_role import SbPart
from fedsilo.vertical.scoring import (
    score_runner,
    simulate_vertical_score,
    trained_job,
)
from fedsilo.vertical.simulation import simulate_vertical
from tests.forgery import raw
from tests.vertical.conftest import EXAMPLES, _make_data

SECTIONS = {
    "hetero_lr": {"hetero_lr": {"epochs": 1, "batch_size": 128, "learning_rate": 0.3}},
    "secureboost": {"secureboost": {"n_trees": 2, "max_depth": 2, "n_bins": 8}},
}


def _train(files: tuple[Path, Path], out: Path, algorithm: str, scheme: str) -> VerticalResult:
    guest, host = files
    job = parse_job(
        {
            "kind": "vertical",
            "name": out.name,
            "seed": 3,
            "algorithm": algorithm,
            "parties": [
                {"name": "bank", "path": str(guest), "id_column": "id", "label": "y"},
                {"name": "provider", "path": str(host), "id_column": "id"},
            ],
            "he": {"scheme": scheme, "key_bits": 1024},
            **SECTIONS[algorithm],
        }
    )
    result = simulate_vertical(job)  # type: ignore[arg-type]
    result.save(out)
    return result


def _new_files(files: tuple[Path, Path], root: Path, ids: list[Any]) -> tuple[Path, Path]:
    """The customers ``ids`` (no label, shuffled) plus 7 new ones the provider does not know."""
    guest, host = (pd.read_csv(f) for f in files)
    new_guest = guest[guest["id"].isin(ids)].drop(columns="y").sample(frac=1.0, random_state=1)
    unknown = new_guest.head(7).assign(id=[f"NEW{i}" for i in range(7)])
    paths = root / "new_bank.csv", root / "new_provider.csv"
    pd.concat([unknown, new_guest]).to_csv(paths[0], index=False)
    host[host["id"].isin(ids)].to_csv(paths[1], index=False)
    return paths


def _score_job(run: Path, new: tuple[Path, Path]) -> VerticalScoreJob:
    job = parse_job(
        {
            "kind": "vertical-score",
            "name": "scores",
            "run": str(run),
            "parties": [
                {"name": "bank", "path": str(new[0]), "id_column": "id"},
                {"name": "provider", "path": str(new[1]), "id_column": "id"},
            ],
        }
    )
    assert isinstance(job, VerticalScoreJob)
    return job


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[Any, float]]]:
    """One trained run per (algorithm, scheme): its directory and held-out scores by ID."""
    root = tmp_path_factory.mktemp("runs")
    files = _make_data().write(root / "data")
    out: dict[str, tuple[Path, dict[Any, float]]] = {}
    for algorithm, scheme in (("hetero_lr", "paillier"), ("secureboost", "paillier")):
        run = root / f"{algorithm}-{scheme}"
        result = _train(files, run, algorithm, scheme)
        assert result.heldout_scores is not None
        out[algorithm] = (run, result.heldout_scores)
    out["files"] = (Path(files[0]), {"host": Path(files[1])})  # type: ignore[dict-item]
    return out


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_heldout_customers_get_the_training_runs_scores_exactly(
    runs: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    run, heldout = runs[algorithm]
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))

    result = simulate_vertical_score(_score_job(run, new))
    paths = result.save(tmp_path / "out")

    predictions = pd.read_csv(paths["predictions"])
    scores = dict(zip(predictions["id"], predictions["score"], strict=True))
    assert set(scores) == set(heldout)  # the 7 unknown to the provider are not scored
    assert all(scores[i] == heldout[i] for i in heldout)  # exact (Paillier, trees)
    doc = json.loads(paths["score_json"].read_text())
    assert doc["alignment"] == {
        "aligned": len(heldout),
        "local_rows": {"bank": len(heldout) + 7, "provider": len(heldout)},
        "unmatched": {"bank": 7, "provider": 0},
    }
    assert doc["run"]["algorithm"] == algorithm and doc["predictions"] == {
        "rows": len(heldout),
        "stored": "in the output directory (simulation)",  # where the simulation wrote them
        "path": str(paths["predictions"].resolve()),
        "sha256": hashlib.sha256(paths["predictions"].read_bytes()).hexdigest(),
    }


def test_customers_with_extreme_values_score_0_or_1_without_an_overflow_warning(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    """Two customers pushed far along the bank's strongest feature: z of about +-3000 (beyond
    the float64 range of exp, inside the Paillier mask's 2**16) scores exactly 1 and 0."""
    run, heldout = runs["hetero_lr"]
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))
    bank = LrPart.load(run / "models" / "bank.safetensors", "bank")
    j = int(np.argmax(np.abs(bank.weights[:-1])))  # the last weight is the intercept
    column = bank.features[j]
    frame = pd.read_csv(new[0])
    up, down = heldout_ids = list(heldout)[:2]
    for customer, sign in ((up, 1.0), (down, -1.0)):
        shift = sign * np.sign(bank.weights[j]) * 3000 / abs(bank.weights[j]) * bank.std[j]
        frame.loc[frame["id"] == customer, column] = bank.mean[j] + shift
    frame.to_csv(new[0], index=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = simulate_vertical_score(_score_job(run, new))

    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert result.guest is not None and result.guest.predictions is not None
    _, ids, values = result.guest.predictions
    scores = dict(zip(ids, values.tolist(), strict=True))
    assert (scores[up], scores[down]) == (1.0, 0.0), heldout_ids
    assert all(0.0 < scores[i] < 1.0 for i in heldout if i not in heldout_ids)


def test_the_example_scores_new_customers_within_ckks_noise(tmp_path: Path) -> None:
    """examples/vertical_breast_cancer: train job.toml (CKKS), then score.toml."""
    make = _make_data()
    data = tmp_path / "data"
    make.write(data)
    make.write_new(data)
    for name in ("job.toml", "score.toml"):
        shutil.copy(EXAMPLES / "vertical_breast_cancer" / name, tmp_path / name)
    run = tmp_path / "runs" / "breast_cancer_vertical"
    text = (tmp_path / "score.toml").read_text().replace("../../runs/", "runs/")
    (tmp_path / "score.toml").write_text(text)
    trained = simulate_vertical(load_job(tmp_path / "job.toml").with_overrides(rounds=1))  # type: ignore[union-attr]
    trained.save(run)
    heldout = trained.heldout_scores
    assert heldout is not None

    job = load_job(tmp_path / "score.toml")
    assert isinstance(job, VerticalScoreJob)
    result = simulate_vertical_score(job)

    assert result.guest is not None and result.guest.predictions is not None
    _, ids, values = result.guest.predictions
    scores = dict(zip(ids, values.tolist(), strict=True))
    again = [i for i in heldout if i in scores]
    assert len(again) >= 10  # the bank's first 100 training customers hold held-out ones
    assert max(abs(scores[i] - heldout[i]) for i in again) < 1e-5  # CKKS noise only
    # 160 bank customers, 12 of them unknown to the provider: 148 scored
    assert result.alignment["aligned"] == 148 and result.alignment["unmatched"]["bank"] == 12
    assert len(scores) == 148 and not any(np.isnan(values))


def test_a_party_without_its_saved_part_fails_naming_itself(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run, heldout = runs["secureboost"]
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "models" / "provider.json").unlink()
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))

    with pytest.raises(DataError, match=r"party .provider. has no saved model part .*provider"):
        simulate_vertical_score(_score_job(copy, new))


def test_a_forged_part_is_refused_naming_party_and_file(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run, heldout = runs["hetero_lr"]
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    # the provider's folder holds the bank's part (wrong party, wrong shapes)
    shutil.copy(copy / "models" / "bank.safetensors", copy / "models" / "provider.safetensors")
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))

    with pytest.raises(DataError, match=r"party .provider.: saved hetero-LR part .* is not") as err:
        simulate_vertical_score(_score_job(copy, new))
    text = str(err.value)
    assert "it is party 'bank''s, role 'guest'" in text and "[]" not in text
    assert "Put 'provider''s own part there (provider.safetensors" in text


def test_a_missing_value_under_the_runs_reject_policy_says_scoring_applies_that_policy(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    """The run trained with missing = "reject" (the default): a scoring job's party has no
    `missing` key to set, so the message points at the training run, not at the job."""
    run, heldout = runs["hetero_lr"]
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))
    provider = pd.read_csv(new[1])
    provider.loc[[2, 6], "x5"] = np.nan
    provider.to_csv(new[1], index=False)

    with pytest.raises(MissingValueError) as err:
        simulate_vertical_score(_score_job(run, new))

    text = str(err.value)
    assert "party 'provider' file" in text and "'x5' has 2 missing value(s) (first: row 3)" in text
    assert f"as the training run {run.name!r} did" in text and 'missing = "reject"' in text
    assert "retrain with missing" in text and "in the job" not in text


def test_a_party_pointed_at_another_partys_file_is_refused_naming_the_columns(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    """Both parties' path is the provider's file (a copy-paste slip): its x0..x9 are the
    bank's column names too, but its x10..x19 are not the bank's."""
    run, heldout = runs["hetero_lr"]
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout))

    with pytest.raises(DataError) as err:
        simulate_vertical_score(_score_job(run, (new[1], new[1])))

    text = str(err.value)
    assert f"party 'bank' file {new[1]}" in text
    assert "unexpected 'x10', 'x11'" in text and "missing" not in text
    assert "another party's" in text


def test_fewer_than_ten_shared_customers_are_refused_saying_why_the_floor_exists(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run, heldout = runs["hetero_lr"]
    files = (runs["files"][0], runs["files"][1]["host"])
    new = _new_files(files, tmp_path, list(heldout)[:8])

    with pytest.raises(RoundFailedError) as err:
        simulate_vertical_score(_score_job(run, new))

    text = str(err.value)
    assert "scoring needs at least 10 customers shared by all parties; 8 are shared" in text
    assert "against IDs that do not match, not a privacy limit" in text
    assert "ID column 'id'" in text and "score these customers together with others" in text


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_a_part_of_the_earlier_format_is_refused_saying_to_retrain(
    runs: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    """Version 1 parts kept no encoding (types, category values, fills): scoring with them
    would rebuild those from the new file, so they are refused, not scored."""
    run, _ = runs[algorithm]
    if algorithm == "hetero_lr":
        source = run / "models" / "provider.safetensors"
        with safe_open(str(source), framework="numpy") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        old = {k: v for k, v in meta.items() if k not in ("format", "encoding")}
        part = tmp_path / "provider.safetensors"
        save_file(tensors, str(part), metadata=old)
        load: Any = LrPart.load
    else:
        doc = json.loads((run / "models" / "bank.json").read_text())
        for key in ("role", "encoding"):
            doc.pop(key)
        doc["format"] = "fedsilo.secureboost/1"
        part = tmp_path / "bank.json"
        part.write_text(json.dumps(doc))
        load = SbPart.load

    with pytest.raises(DataError) as err:
        load(part, part.stem)

    text = str(err.value)
    assert f"party {part.stem!r}" in text and str(part) in text
    assert "written by an earlier fedsilo" in text and "Retrain the run" in text


@pytest.mark.parametrize("name", ["provider.safetensors", "provider.json"])
def test_a_damaged_part_is_refused_naming_the_file_and_what_to_do(
    tmp_path: Path, name: str
) -> None:
    part = tmp_path / name
    part.write_bytes(b"\x00\x01 not a part")
    load: Any = LrPart.load if name.endswith(".safetensors") else SbPart.load

    with pytest.raises(DataError) as err:
        load(part, "provider")

    text = str(err.value)
    assert "party 'provider'" in text and f"{part} cannot be read" in text
    assert "damaged or not a model part" in text and "Copy the party's part again" in text


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_a_coordinator_that_swaps_the_roles_is_refused(
    runs: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    """The coordinator claims the provider is the guest: each party checks its own part."""
    run, heldout = runs[algorithm]
    files = (runs["files"][0], runs["files"][1]["host"])
    job = _score_job(run, _new_files(files, tmp_path, list(heldout)))
    trained = trained_job(run, source="test")
    swapped = trained.model_copy(
        update={
            "parties": [
                p.model_copy(update={"label": None if p.label else "y"}) for p in trained.parties
            ]
        }
    )
    agents = {p.name: VerticalPartyAgent.for_scoring(p, run / "models") for p in job.parties}
    runner = score_runner(job, swapped, InProcessTransport(agents), run_id=run.name)

    with pytest.raises(
        RoundFailedError,
        match=r"party .\w+.: the scoring job.s roles .* do not match its saved part",
    ):
        runner.run_scoring()


class LyingGuest:
    """The guest reports more predictions than customers were aligned (a malicious party)."""

    def __init__(self, agent: VerticalPartyAgent) -> None:
        self.agent = agent

    def handle(self, data: bytes) -> bytes:
        reply = Message.decode(self.agent.handle(data))
        if reply.kind is not TaskKind.VERTICAL_PREDICTIONS:
            return reply.encode()
        return raw(reply, {**reply.body, "rows": reply.body["rows"] + 1})


def test_a_guest_reporting_a_wrong_prediction_count_is_refused(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run, heldout = runs["secureboost"]
    files = (runs["files"][0], runs["files"][1]["host"])
    job = _score_job(run, _new_files(files, tmp_path, list(heldout)))
    agents: dict[str, Any] = {
        p.name: VerticalPartyAgent.for_scoring(p, run / "models") for p in job.parties
    }
    agents["bank"] = LyingGuest(agents["bank"])
    runner = score_runner(
        job, trained_job(run, source="test"), InProcessTransport(agents), run_id=run.name
    )

    with pytest.raises(ProtocolError, match=r"vertical_predictions reply from 'bank'"):
        runner.run_scoring()


def test_a_scoring_job_must_name_the_runs_parties_and_a_run(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run, _ = runs["hetero_lr"]
    job = parse_job(
        {
            "kind": "vertical-score",
            "run": str(run),
            "parties": [
                {"name": "bank", "path": "a.csv"},
                {"name": "retailer", "path": "b.csv"},
            ],
        }
    )
    assert isinstance(job, VerticalScoreJob)
    with pytest.raises(ConfigError, match=r"parties \['bank', 'retailer'\] are not those"):
        simulate_vertical_score(job)
    missing = job.model_copy(update={"run": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=r"key 'run': .*nowhere.*run the training job first"):
        simulate_vertical_score(missing)
    with pytest.raises(FedsiloError, match=r"key 'run'"):
        parse_job({"kind": "vertical-score", "parties": [{"name": "a", "path": "a.csv"}] * 2})
