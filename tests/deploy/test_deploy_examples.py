"""The example party.toml files load: [privacy] and [analytics] keys, paths resolved."""

from __future__ import annotations

from pathlib import Path

from fedsilo.deploy.config import load_party_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "deploy"


def test_example_party_configs_load_with_privacy_and_analytics() -> None:
    for x in "abc":
        cfg = load_party_config(EXAMPLES / f"party_{x}.toml")
        assert cfg.name == f"bank-{x}"
        assert cfg.privacy.max_epsilon == 5.0
        assert cfg.privacy.audit_log == EXAMPLES / "audit" / f"bank-{x}.jsonl"
        table = cfg.analytics.tables["transactions"]
        assert table == EXAMPLES / ".." / "analytics" / "data" / f"bank_{x}.csv"
        assert cfg.ledger_path == EXAMPLES / "privacy" / f"bank-{x}.sqlite"
        assert cfg.analytics.policy.allow_exact is False
        assert cfg.analytics.policy.max_query_epsilon == 1.0


def test_the_example_analytics_job_is_one_a_server_takes() -> None:
    from fedsilo.deploy.queries import parse_deploy_analytics_job

    banks = ["bank-a", "bank-b", "bank-c"]
    job = parse_deploy_analytics_job(
        (EXAMPLES / "analytics_job.toml").read_text(), source="job", registered=banks
    )
    assert job.party_names() == banks and job.seed is None
