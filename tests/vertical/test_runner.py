"""The vertical job runner: PSI relayed through the coordinator, the agents, the outputs."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from sklearn.datasets import load_breast_cancer

from fedsilo.errors import ConfigError, ErrorCode, RoundFailedError
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import Gathered, InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.config import parse_vertical_job
from fedsilo.vertical.psi import PsiClient
from fedsilo.vertical.runner import VerticalRunner, heldout_split
from fedsilo.vertical.simulation import simulate_vertical


def _ids(n: int) -> list[str]:
    return [f"cust-{i:05d}-zq" for i in range(n)]


def _three_party_files(tmp: Path) -> dict[str, Path]:
    """Guest with 500 of 569 customers; two hosts missing different ones, shuffled."""
    data = load_breast_cancer()
    ids = _ids(len(data.target))
    guest = pd.DataFrame(data.data[:, :10], columns=[f"g{j}" for j in range(10)])
    guest.insert(0, "y", data.target)
    guest.insert(0, "cid", ids)
    paths = {"bank": tmp / "bank.csv"}
    guest.iloc[:500].to_csv(paths["bank"], index=False)
    for k, (name, cols) in enumerate((("shop", slice(10, 20)), ("telco", slice(20, 30))), 1):
        host = pd.DataFrame(data.data[:, cols], columns=[f"{name}{j}" for j in range(10)])
        host.insert(0, "customer", ids)
        paths[name] = tmp / f"{name}.csv"
        host.iloc[30 * k :].sample(frac=1.0, random_state=k).to_csv(paths[name], index=False)
    return paths


def _job(paths: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "vertical",
        "name": "runner",
        "seed": 5,
        "parties": [
            {"name": "bank", "path": str(paths["bank"]), "id_column": "cid", "label": "y"},
            {"name": "shop", "path": str(paths["shop"]), "id_column": "customer"},
            {"name": "telco", "path": str(paths["telco"]), "id_column": "customer"},
        ],
        "he": {"scheme": "paillier", "key_bits": 1024},
        **extra,
    }


class Recording(InProcessTransport):
    """Keeps the bytes of every task and reply that crosses the coordinator."""

    def __init__(self, parties: dict[str, Any]) -> None:
        super().__init__(parties)
        self.wire: list[bytes] = []

    def exchange(self, tasks: Any, *, timeout_s: float) -> Gathered:
        self.wire.extend(m.encode() for m in tasks.values())
        got = super().exchange(tasks, timeout_s=timeout_s)
        self.wire.extend(m.encode() for m in got.replies.values())
        return got


def test_relayed_psi_matches_in_process_alignment_and_hides_ids(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    job = parse_vertical_job(_job(paths))
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    transport = Recording(agents)
    alignment = VerticalRunner(job, transport).align()

    # The reference: the plain set intersection of the three files' IDs and the job seed's split.
    frames = {name: pd.read_csv(path) for name, path in paths.items()}
    shared = set(frames["bank"]["cid"]) & set(frames["shop"]["customer"])
    shared &= set(frames["telco"]["customer"])
    train, test = heldout_split(job.seed, len(shared), job.test_fraction)
    assert alignment.aligned == len(shared) == 569 - 60 - 69  # c60..c499
    assert np.array_equal(alignment.train, train)
    assert np.array_equal(alignment.test, test)
    assert alignment.local_rows == {"bank": 500, "shop": 539, "telco": 509}
    order = agents["bank"].aligned.ids if agents["bank"].aligned is not None else []
    assert set(order) == shared and len(order) == len(shared)
    for name, column in (("bank", "cid"), ("shop", "customer"), ("telco", "customer")):
        agent = agents[name]
        assert agent.aligned is not None
        assert agent.aligned.ids == order  # same customers, same order at every party
        frame = frames[name].set_index(column).loc[order]
        features = frame.drop(columns=["y"], errors="ignore").to_numpy(float)
        np.testing.assert_array_equal(agent.aligned.features, features)
    assert agents["bank"].aligned is not None and agents["bank"].aligned.labels is not None
    assert agents["shop"].aligned is not None and agents["shop"].aligned.labels is None

    # The coordinator relays every PSI byte, yet no customer ID crosses it in the clear...
    assert transport.wire and any(b"psi_finish" in w for w in transport.wire)
    blob = b"\x00".join(transport.wire)
    assert not [i for i in _ids(569) if i.encode() in blob]
    # ...although the unsealed finish message does carry them (so the search above can fail).
    client = PsiClient(order, party="x", seed=1)
    client._order = list(map(str, order))  # the state after intersect
    assert str(order[0]).encode() in client.finish_message()

    report = alignment.report()
    assert report["reveal"] == "both" and report["parties"]["bank"]["role"] == "client"
    assert report["parties"]["shop"]["num_rows"] == 539


def test_agent_answers_malformed_and_out_of_order_tasks_with_errors(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    job = parse_vertical_job(_job(paths))
    agent = VerticalPartyAgent.from_config(job.parties[1])  # a host

    def ask(msg: Message) -> Message:
        return Message.decode(agent.handle(msg.encode()))

    garbage = Message.decode(agent.handle(b"\x00\x01not a message"))
    assert garbage.sender == "shop" and garbage.error_code is ErrorCode.BAD_REQUEST
    assert garbage.error is not None and "malformed" in garbage.error
    early = ask(Message(TaskKind.PSI_FINISH, "j", 0, "coordinator"))
    assert early.error is not None and "before psi_open" in early.error
    assert early.error_code is ErrorCode.NOT_READY
    training = ask(Message(TaskKind.SB_SPLIT, "j", 0, "coordinator"))
    assert training.error is not None and "before the vertical setup" in training.error
    assert training.error_code is ErrorCode.NOT_READY
    typo = ask(Message(TaskKind.PSI_OPEN, "j", 0, "coordinator", {"party": {}, "gest": "bank"}))
    assert typo.error_code is ErrorCode.BAD_REQUEST and typo.error is not None
    assert "coordinator round 0: psi_open field 'guest' is invalid" in typo.error
    wrong_role = ask(
        Message(
            TaskKind.PSI_OPEN,
            "j",
            0,
            "coordinator",
            {
                "party": {"id_column": "customer", "label": "y"},
                "guest": "bank",
                "hosts": ["shop"],
                "seed": 1,
            },
        )
    )
    assert wrong_role.error is not None and "roles" in wrong_role.error
    missing_col = ask(
        Message(
            TaskKind.PSI_OPEN,
            "j",
            0,
            "coordinator",
            {"party": {"id_column": "nope"}, "guest": "bank", "hosts": ["shop"], "seed": 1},
        )
    )
    assert missing_col.error is not None
    assert (
        "shop" in missing_col.error
        and "nope" in missing_col.error
        and "shop.csv" in missing_col.error
    )
    ok = ask(
        Message(
            TaskKind.PSI_OPEN,
            "j",
            0,
            "coordinator",
            {"party": {"id_column": "customer"}, "guest": "bank", "hosts": ["shop"], "seed": 1},
        )
    )
    assert ok.error is None and ok.body["rows"] == 539
    tampered = ask(
        Message(
            TaskKind.PSI_SETUP,
            "j",
            0,
            "coordinator",
            {"client_elements": 3},
            {
                "request": np.frombuffer(b"FSPSI1garbage", dtype=np.uint8),
                "key:bank": np.zeros(32, np.uint8),
            },
        )
    )
    assert tampered.error is not None  # a bad request is an error reply, not a crash

    # A deployed party never writes outside its models directory, whatever the job id says.
    deployed = VerticalPartyAgent("shop", path=paths["shop"], models_dir=tmp_path / "models")
    body = {"party": {"id_column": "customer"}, "guest": "bank", "hosts": ["shop"], "seed": 1}
    for job_id in ("../../escape", "ok-job"):
        opened = Message.decode(
            deployed.handle(Message(TaskKind.PSI_OPEN, job_id, 0, "c", body).encode())
        )
        assert opened.error is None
        saved = Message.decode(
            deployed.handle(Message(TaskKind.VERTICAL_SAVE, job_id, 0, "c").encode())
        )
        assert saved.error is not None
        assert ("not a safe name" in saved.error) == (job_id != "ok-job")
    assert not (tmp_path / "escape").exists()


def test_too_few_shared_customers_is_a_clear_error(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    frame = pd.read_csv(paths["shop"])
    frame["customer"] = [f"other-{i}" for i in range(len(frame))]
    frame.to_csv(paths["shop"], index=False)
    job = parse_vertical_job(_job(paths))
    with pytest.raises(
        RoundFailedError, match=r"only 0 customers are shared.*needs at least 10.*'cid'"
    ):
        simulate_vertical(job)


def test_secureboost_section_is_validated() -> None:
    base = {
        "kind": "vertical",
        "algorithm": "secureboost",
        "parties": [
            {"name": "a", "builtin": "breast_cancer/guest", "label": "y"},
            {"name": "b", "builtin": "breast_cancer/host"},
        ],
    }
    with pytest.raises(ConfigError, match=r"secureboost\.max_depth"):
        parse_vertical_job({**base, "secureboost": {"max_depth": 0}})
    with pytest.raises(ConfigError, match="validation_fraction"):
        parse_vertical_job({**base, "secureboost": {"early_stopping_rounds": 3}})
    with pytest.raises(ConfigError, match=r"Did you mean 'secureboost\.n_trees'"):
        parse_vertical_job({**base, "secureboost": {"n_tree": 3}})
    with pytest.raises(ConfigError, match=r"sets \[hetero_lr\] but algorithm is 'secureboost'"):
        parse_vertical_job({**base, "hetero_lr": {"epochs": 3}})
    job = parse_vertical_job({**base, "secureboost": {"n_trees": 4, "n_bins": 16}})
    assert job.secureboost.params().n_trees == 4 and job.secureboost.params().n_bins == 16


@pytest.mark.slow
def test_secureboost_job_two_hosts_outputs(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    raw = _job(
        paths,
        algorithm="secureboost",
        secureboost={
            "n_trees": 4,
            "max_depth": 2,
            "learning_rate": 0.3,
            "validation_fraction": 0.2,
            "early_stopping_rounds": 2,
        },
    )
    job = parse_vertical_job(raw)
    trees: list[tuple[int, float]] = []
    result = simulate_vertical(job, baseline=True, on_tree=lambda t, s: trees.append((t, s)))
    doc = result.metrics_json()
    v, test = doc["vertical"], doc["final"]["global"]
    assert doc["job"]["kind"] == "vertical" and v["algorithm"] == "secureboost"
    assert v["he_scheme"] == "paillier" and v["alignment"]["aligned"] == 440
    assert test["auc"] > 0.95 and v["train"]["auc"] >= test["auc"] - 0.05
    assert abs(test["auc"] - doc["baseline"]["auc"]) <= 0.03
    train_loss = [h["train_loss"] for h in doc["history"]]
    n = len(train_loss)
    assert 1 <= v["n_trees"] <= n <= 4
    valid_loss = [h["valid_loss"] for h in doc["history"] if h["valid_loss"] is not None]
    seconds = [h["duration_s"] for h in doc["history"] if h["duration_s"] is not None]
    assert len(valid_loss) == n == len(seconds) == len(trees)
    assert train_loss == sorted(train_loss, reverse=True)
    paths_out = result.save(tmp_path / "run")
    guest = json.loads((paths_out["model"] / "bank.json").read_text())
    shop = json.loads((paths_out["model"] / "shop.json").read_text())
    assert guest["party"] == "bank" and len(guest["trees"]) == v["n_trees"]
    # a host keeps only its split table and how it encodes its own columns
    assert set(shop) == {"format", "party", "role", "features", "encoding", "records"}
    assert [c["name"] for c in shop["encoding"]["columns"]] == shop["features"]
    assert all(set(r) == {"feature", "threshold"} for r in shop["records"])
    assert "threshold" not in json.dumps(guest["trees"])  # no host threshold in the guest's part
    assert "SecureBoost" in paths_out["report"].read_text()


@pytest.mark.slow
def test_hetero_lr_job_saves_each_party_part(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    job = parse_vertical_job(_job(paths, hetero_lr={"epochs": 1, "batch_size": 256}))
    result = simulate_vertical(job)
    out = result.save(tmp_path / "run")
    doc = json.loads(out["metrics_json"].read_text())
    assert doc["final"]["global"]["auc"] > 0.9 and len(doc["history"]) == 1
    assert doc["vertical"]["train"] is None and doc["baseline"] is None
    assert load_file(str(out["model"] / "shop.safetensors"))["weights"].shape == (10,)
    assert load_file(str(out["model"] / "bank.safetensors"))["weights"].shape == (
        11,
    )  # + intercept
    # metrics.json says where the simulation wrote each part (not "in memory")
    for name in ("bank", "shop", "telco"):
        part = out["model"] / f"{name}.safetensors"
        assert doc["vertical"]["model_parts"][name] == {
            "stored": "in the run directory (simulation)",
            "path": str(part.resolve()),
            "sha256": hashlib.sha256(part.read_bytes()).hexdigest(),
        }


class Tampering(InProcessTransport):
    """A relay that flips one bit of the guest's sealed PSI finish message for ``shop``."""

    def exchange(self, tasks: Any, *, timeout_s: float) -> Gathered:
        got = super().exchange(tasks, timeout_s=timeout_s)
        reply = got.replies.get("bank")
        if reply is not None and reply.kind is TaskKind.PSI_INTERSECT:
            arrays = dict(reply.arrays)
            sealed = arrays["to:shop"].copy()
            sealed[-1] ^= 1
            arrays["to:shop"] = sealed
            got.replies["bank"] = Message(
                reply.kind, reply.job_id, reply.round, reply.sender, reply.body, arrays
            )
        return got


def test_a_tampering_relay_is_caught_by_the_host(tmp_path: Path) -> None:
    paths = _three_party_files(tmp_path)
    job = parse_vertical_job(_job(paths))
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}
    with pytest.raises(RoundFailedError, match=r"'shop'.*failed authentication"):
        VerticalRunner(job, Tampering(agents)).align()
    assert agents["shop"].aligned is None and agents["telco"].aligned is not None


def test_psi_progress_reaches_the_coordinator_and_the_parties_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _three_party_files(tmp_path)
    job = parse_vertical_job(_job(paths, psi={"batch_size": 200}, hetero_lr={"epochs": 1}))
    steps: list[tuple[str, int, int]] = []

    with caplog.at_level(logging.INFO, logger="fedsilo.vertical.agent"):
        simulate_vertical(job, on_psi_step=lambda *step: steps.append(step))

    assert steps == [
        ("psi_open", 1, 5),
        ("psi_request", 2, 5),
        ("psi_setup", 3, 5),
        ("psi_intersect", 4, 5),
        ("psi_finish", 5, 5),
    ]
    # 500 guest IDs in batches of 200: each party logs its batches as they are processed.
    progress = [r.getMessage() for r in caplog.records if "PSI" in r.getMessage()]
    assert "party 'bank' PSI client for 'shop': 500 of 500 IDs" in progress
    assert any(m.startswith("party 'shop' PSI server: ") for m in progress)
    assert any(" 200 of " in m for m in progress)  # a partial batch line, not only the end
    # The hosts' 539 and 509 IDs make 3 server batches each; the guest's intersection still
    # counts its own 500 IDs (not 500 x 3), and a host's setup its own IDs.
    client = [m for m in progress if m.startswith("party 'bank' PSI client")]
    assert client and all(m.endswith(" of 500 IDs") for m in client), client
    assert "party 'shop' PSI server: 539 of 539 IDs" in progress
    assert "party 'telco' PSI server: 509 of 509 IDs" in progress
