"""Per-party feature importance of vertical models, and who gets to see the names.

A host's feature names must never reach the guest's outputs (metrics.json, metrics.csv,
report.html, the guest's saved part, the CLI summary, the logs) unless that host's own config
shares them; the coordinator cannot ask for them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.deploy.vertical_jobs import parse_deploy_vertical_job
from fedsilo.errors import ConfigError
from fedsilo.jobs import parse_job
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.vertical.agent import VerticalPartyAgent
from fedsilo.vertical.runner import VerticalRunner
from tests.forgery import raw

HOST_NAMES = ("secret_income", "secret_debt", "secret_tenure")
SECTIONS = {
    "hetero_lr": "[hetero_lr]\nepochs = 1\nbatch_size = 256\n",
    "secureboost": "[secureboost]\nn_trees = 2\nmax_depth = 2\nn_bins = 8\n",
}


def _files(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(4)
    n = 240
    host = rng.normal(size=(n, 3))
    guest = rng.normal(size=(n, 2))
    y = (host[:, 0] - host[:, 1] + 0.5 * guest[:, 0] > 0).astype(int)
    ids = [f"c{i}" for i in range(n)]
    frame_g = pd.DataFrame(guest, columns=["age", "balance"]).assign(id=ids, y=y)
    frame_h = pd.DataFrame(host, columns=list(HOST_NAMES)).assign(id=ids)
    paths = root / "guest.csv", root / "host.csv"
    frame_g.to_csv(paths[0], index=False)
    frame_h.to_csv(paths[1], index=False)
    return paths


def _job(root: Path, algorithm: str, share: bool) -> Path:
    guest, host = _files(root)
    path = root / "job.toml"
    path.write_text(
        f'kind = "vertical"\nname = "imp"\nalgorithm = "{algorithm}"\nseed = 2\n'
        f'[[parties]]\nname = "bank"\npath = "{guest}"\nlabel = "y"\n'
        f'[[parties]]\nname = "provider"\npath = "{host}"\n'
        f"share_feature_names = {'true' if share else 'false'}\n"
        f'[he]\nscheme = "ckks"\n{SECTIONS[algorithm]}'
    )
    return path


def _guest_outputs(out: Path) -> dict[str, str]:
    """Every file of the run the guest reads: all but the host's own model part."""
    return {
        str(p.relative_to(out)): p.read_text(errors="replace")
        for p in out.rglob("*")
        if p.is_file() and p.name != "provider.json" and p.name != "provider.safetensors"
    }


@pytest.mark.parametrize("algorithm", ["hetero_lr", "secureboost"])
def test_host_feature_names_stay_with_the_host_unless_it_shares_them(
    tmp_path: Path, algorithm: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    caplog.set_level(logging.DEBUG, logger="fedsilo")
    result = CliRunner().invoke(
        app, ["simulate", str(_job(tmp_path, algorithm, False)), "--out", str(out), "-v"]
    )
    assert result.exit_code == 0, result.output

    seen = {"cli": result.output, "logs": caplog.text, **_guest_outputs(out)}
    leaks = {where: n for where, text in seen.items() for n in HOST_NAMES if n in text}
    assert leaks == {}
    doc = __import__("json").loads((out / "metrics.json").read_text())
    imp = doc["importance"]
    assert imp["provider"]["by_feature"] is None and imp["provider"]["features"] == 3
    assert set(imp["bank"]["by_feature"]) == {"age", "balance"}  # the guest's own, by name
    assert "names not shared" in result.output  # the host's row in the CLI table
    assert ("age (" in result.output) == any(  # the guest's features it used, by name
        e.get("coefficient") or e.get("splits") for e in imp["bank"]["by_feature"].values()
    )
    assert "Feature importance" in seen["report.html"]
    if algorithm == "hetero_lr":  # standardized coefficients; host total = sum |coef|
        coefs = [e["coefficient"] for e in imp["bank"]["by_feature"].values()]
        assert imp["bank"]["total"]["coefficient"] == pytest.approx(sum(map(abs, coefs)))
        assert imp["provider"]["total"]["coefficient"] > imp["bank"]["total"]["coefficient"]
    else:  # the label leans on the host: it owns splits, with their gain
        assert imp["provider"]["total"]["splits"] >= 1 and imp["provider"]["total"]["gain"] > 0

    # The same run with the host sharing its names: now they are in the outputs, and agree
    # with the totals.
    shared = tmp_path / "shared"
    shared.mkdir()
    out2 = shared / "run"
    result = CliRunner().invoke(
        app, ["simulate", str(_job(shared, algorithm, True)), "--out", str(out2)]
    )
    assert result.exit_code == 0, result.output
    doc = __import__("json").loads((out2 / "metrics.json").read_text())
    named = doc["importance"]["provider"]["by_feature"]
    assert set(named) == set(HOST_NAMES)
    assert "secret_income" in (out2 / "report.html").read_text()
    key = "coefficient" if algorithm == "hetero_lr" else "splits"
    values = [e[key] for e in named.values()]
    total = doc["importance"]["provider"]["total"][key]
    assert total == pytest.approx(sum(map(abs, values)) if key == "coefficient" else sum(values))


def _sb_agents(
    tmp_path: Path, name: str, *, trees: int
) -> tuple[Any, dict[str, VerticalPartyAgent]]:
    """A SecureBoost job of a bank (guest) and a provider (host) over :func:`_files`."""
    job = parse_job(
        {
            "kind": "vertical",
            "name": name,
            "algorithm": "secureboost",
            "parties": [
                {"name": "bank", "path": str(_files(tmp_path)[0]), "label": "y"},
                {"name": "provider", "path": str(tmp_path / "host.csv")},
            ],
            "secureboost": {"n_trees": trees, "max_depth": 2, "n_bins": 8},
        }
    )
    agents = {p.name: VerticalPartyAgent.from_config(p) for p in job.parties}  # type: ignore[union-attr]
    return job, agents


def test_a_coordinator_cannot_ask_a_party_for_its_feature_names(tmp_path: Path) -> None:
    job, agents = _sb_agents(tmp_path, "ask", trees=1)
    VerticalRunner(job, InProcessTransport(agents)).run()  # type: ignore[arg-type]
    task = Message(TaskKind.VERTICAL_IMPORTANCE, "ask", 0, "coordinator", {})

    honest = Message.decode(agents["provider"].handle(task.encode()))
    forged: dict[str, Any] = {"share_feature_names": True}
    asked = Message.decode(agents["provider"].handle(raw(task, forged)))

    assert honest.error is None and honest.body.get("by_feature") is None
    assert honest.body["features"] == 3  # its total only (no gains were relayed here)
    assert asked.error is not None and "share_feature_names" in asked.error
    assert not any(n in asked.error for n in HOST_NAMES)


def test_a_deployed_job_cannot_set_a_partys_name_sharing() -> None:
    text = (
        'kind = "vertical"\nname = "d"\n[[parties]]\nname = "bank"\nlabel = "y"\n'
        '[[parties]]\nname = "provider"\nshare_feature_names = true\n'
    )
    with pytest.raises(ConfigError, match=r"provider: key 'share_feature_names' is each party"):
        parse_deploy_vertical_job(text, source="job.toml", registered=["bank", "provider"])


class _Recording(InProcessTransport):
    """The coordinator's view: every task and reply it relays, decoded."""

    def __init__(self, agents: dict[str, Any]) -> None:
        super().__init__(agents)  # type: ignore[arg-type]
        self.seen: list[Message] = []

    def exchange(self, tasks: Any, *, timeout_s: float) -> Any:
        gathered = super().exchange(tasks, timeout_s=timeout_s)
        self.seen += [*tasks.values(), *gathered.replies.values()]
        return gathered


def test_the_coordinator_relays_a_hosts_split_gains_without_reading_them(tmp_path: Path) -> None:
    job, agents = _sb_agents(tmp_path, "gains", trees=2)
    transport = _Recording(agents)
    outcome = VerticalRunner(job, transport).run()

    host = outcome.importance["provider"]
    assert host["total"]["splits"] >= 1 and host["total"]["gain"] > 0  # the host got its gains
    relayed = [m for m in transport.seen if m.kind is TaskKind.VERTICAL_IMPORTANCE]
    assert relayed, "the importance step went through the recording coordinator"
    for message in relayed:
        assert "host_splits" not in message.body and "splits" not in message.body
        assert "gains" not in str(message.body)
    sealed = [m.arrays["to:provider"] for m in relayed if "to:provider" in m.arrays]
    assert len(sealed) == 1 and sealed[0].dtype == np.uint8  # opaque bytes, AES-GCM sealed


def test_a_host_refuses_split_gains_the_coordinator_altered(tmp_path: Path) -> None:
    job, agents = _sb_agents(tmp_path, "gains", trees=2)
    VerticalRunner(job, InProcessTransport(agents)).run()  # type: ignore[arg-type]
    guest = Message.decode(
        agents["bank"].handle(Message(TaskKind.VERTICAL_IMPORTANCE, "gains", 0, "c", {}).encode())
    )
    blob = guest.arrays["to:provider"].copy()
    blob[-1] ^= 1  # one bit flipped in transit
    task = Message(TaskKind.VERTICAL_IMPORTANCE, "gains", 0, "c", {}, {"from:bank": blob})
    reply = Message.decode(agents["provider"].handle(task.encode()))
    assert reply.error is not None and "sealed payload from 'bank'" in reply.error
