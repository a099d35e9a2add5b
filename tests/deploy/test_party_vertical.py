"""A party process's vertical plumbing in process: party.toml [vertical], routing, refusals."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from fedsilo.deploy.config import load_party_config
from fedsilo.deploy.jobs import parse_deploy_job
from fedsilo.deploy.party_process import load_agent
from fedsilo.deploy.party_tasks import TaskRouter
from fedsilo.deploy.vertical_jobs import parse_deploy_vertical_job
from fedsilo.errors import ConfigError, ErrorCode
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.protocol.serve import Routes
from fedsilo.runtime.party import TRAINING_KINDS
from fedsilo.vertical.kinds import VERTICAL_KINDS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "deploy"


def echo(role: str, kinds: Iterable[TaskKind]) -> Routes:
    """A role that answers each of its kinds with its own name."""
    return dict.fromkeys(kinds, lambda task: ({"role": role}, {}))


def test_router_sends_vertical_kinds_to_the_vertical_agent_or_refuses() -> None:
    psi = Message(TaskKind.PSI_OPEN, "job-1", 0, "coordinator").encode()
    fit = Message(TaskKind.FIT, "job-1", 3, "coordinator").encode()
    sb = Message(TaskKind.SB_HISTOGRAMS, "job-1", 2, "coordinator").encode()
    training, vertical = echo("training", TRAINING_KINDS), echo("vertical", VERTICAL_KINDS)
    both = TaskRouter(training, None, vertical, name="p")
    roles = [Message.decode(both.handle(t)).body["role"] for t in (psi, sb, fit)]
    assert roles == ["vertical", "vertical", "training"]

    horizontal_only = TaskRouter(training, None, None, name="p")
    reply = Message.decode(horizontal_only.handle(sb))
    assert reply.kind is TaskKind.SB_HISTOGRAMS and reply.round == 2 and reply.sender == "p"
    assert reply.error_code is ErrorCode.CONFIG
    assert (
        reply.error
        == "party 'p' has no vertical data: add [vertical] data = \"<file>\" to its party.toml"
    )
    vertical_only = TaskRouter(None, None, vertical, name="p")
    reply = Message.decode(vertical_only.handle(fit))
    assert reply.error is not None and "no training data" in reply.error
    junk = Message.decode(vertical_only.handle(b"junk"))
    assert junk.error is not None and "malformed" in junk.error


def test_party_toml_vertical_section(tmp_path: Path) -> None:
    cfg = load_party_config(EXAMPLES / "party_a.toml")
    assert (
        cfg.vertical.data
        == EXAMPLES / ".." / "vertical_breast_cancer" / "data" / "breast_hetero_guest.csv"
    )
    assert cfg.models_dir == EXAMPLES / "models" / "bank-a"
    assert load_party_config(EXAMPLES / "party_c.toml").vertical.data is None

    only = tmp_path / "v.toml"
    only.write_text(f'name = "p"\nserver = "x:1"\n[vertical]\ndata = "{tmp_path / "nope.csv"}"\n')
    cfg = load_party_config(only)
    assert cfg.data is None and cfg.models_dir == tmp_path / "models-p"
    with pytest.raises(ConfigError, match=r"vertical data file .*nope\.csv does not exist"):
        load_agent(cfg)
    (tmp_path / "v.csv").write_text("id,x\na,1\n")
    only.write_text(f'name = "p"\nserver = "x:1"\n[vertical]\ndata = "{tmp_path / "v.csv"}"\n')
    assert isinstance(load_agent(load_party_config(only)), TaskRouter)
    none = tmp_path / "none.toml"
    none.write_text('name = "p"\nserver = "x:1"\n')
    with pytest.raises(ConfigError, match="the party has no data"):
        load_party_config(none)


def test_submitted_vertical_job_is_validated_against_the_registry() -> None:
    text = (EXAMPLES / "vertical_job.toml").read_text()
    job = parse_deploy_vertical_job(text, source="vj", registered=["bank-a", "bank-b", "bank-c"])
    assert job.guest.name == "bank-a" and [h.name for h in job.hosts] == ["bank-b"]
    assert job.rounds == 6
    with pytest.raises(ConfigError, match="bank-b are not registered"):
        parse_deploy_vertical_job(text, source="vj", registered=["bank-a"])
    with pytest.raises(ConfigError, match="exactly one party must set 'label'"):
        parse_deploy_vertical_job(
            text.replace('label = "y"', ""), source="vj", registered=["bank-a", "bank-b"]
        )
    with pytest.raises(ConfigError, match=r"\[\[parties\]\] tables"):
        parse_deploy_vertical_job('kind = "vertical"', source="vj", registered=["bank-a"])
    # the horizontal parser still takes horizontal jobs
    assert (
        parse_deploy_job(
            (EXAMPLES / "job.toml").read_text(),
            source="j",
            registered=["bank-a", "bank-b", "bank-c"],
        ).rounds
        == 15
    )


def test_score_data_is_read_beside_party_toml_like_every_path(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    toml = tmp_path / "conf" / "p.toml"
    toml.write_text(
        'name = "p"\nserver = "x:1"\n[vertical]\ndata = "../v.csv"\nscore_data = "../new.csv"\n'
    )
    cfg = load_party_config(toml)
    assert cfg.vertical.data == tmp_path / "conf" / ".." / "v.csv"
    assert cfg.vertical.score_data == tmp_path / "conf" / ".." / "new.csv"


def test_a_deployed_job_naming_a_party_budget_is_refused() -> None:
    job = (
        'name = "j"\n[data]\nlabel = "y"\n[[parties]]\nname = "a"\n[[parties]]\nname = "b"\n'
        "[privacy.budget]\nmax_epsilon = 4.0\n"
    )
    with pytest.raises(ConfigError, match=r"privacy\.budget max_epsilon .*a deployed party keeps "):
        parse_deploy_job(job, source="job.toml", registered=["a", "b"])
    kept = job.replace("max_epsilon = 4.0", 'on_exhausted = "stop"')
    assert parse_deploy_job(kept, source="job.toml", registered=["a", "b"]).name == "j"
