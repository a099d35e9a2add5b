"""One job model: `kind` picks horizontal, vertical or analytics; one loader, one explainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsilo.analytics.config import AnalyticsJob, load_analytics_job
from fedsilo.config import JobConfig
from fedsilo.deploy.config import load_party_config, load_server_config
from fedsilo.errors import ConfigError
from fedsilo.jobs import load_job, parse_job
from fedsilo.simulation import as_training_job
from fedsilo.vertical.config import VerticalAlgorithm, VerticalJobConfig, load_vertical_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "model", "kind"),
    [
        ("mnist_3orgs.toml", JobConfig, "horizontal"),
        ("banks_csv/job.toml", JobConfig, "horizontal"),
        ("vertical_breast_cancer/job.toml", VerticalJobConfig, "vertical"),
        ("vertical_breast_cancer/secureboost.toml", VerticalJobConfig, "vertical"),
        ("analytics/job.toml", AnalyticsJob, "analytics"),
        ("analytics/job_secure.toml", AnalyticsJob, "analytics"),
    ],
)
def test_one_loader_reads_every_example_by_its_kind(name: str, model: type, kind: str) -> None:
    job = load_job(EXAMPLES / name)
    assert type(job) is model and job.kind == kind


def test_relative_paths_resolve_against_the_job_file_for_every_kind() -> None:
    vertical = load_job(EXAMPLES / "vertical_breast_cancer" / "job.toml")
    analytics = load_job(EXAMPLES / "analytics" / "job.toml")
    assert isinstance(vertical, VerticalJobConfig) and isinstance(analytics, AnalyticsJob)
    assert vertical.guest.path == EXAMPLES / "vertical_breast_cancer" / "data" / (
        "breast_hetero_guest.csv"
    )
    assert analytics.parties[0].path == EXAMPLES / "analytics" / "data" / "bank_a.csv"


def test_misspelled_vertical_key_gets_did_you_mean_from_the_generic_loader(
    tmp_path: Path,
) -> None:
    text = (EXAMPLES / "vertical_breast_cancer" / "job.toml").read_text()
    path = tmp_path / "job.toml"
    path.write_text(text.replace("learning_rate = 0.3", "learning_rat = 0.3"))
    with pytest.raises(ConfigError) as err:
        load_job(path)
    msg = str(err.value)
    assert "key 'hetero_lr.learning_rat' is not a known key" in msg
    assert "Did you mean 'hetero_lr.learning_rate'?" in msg
    assert msg.count("is not a known key") == 1  # no false errors from another kind's model


def test_unknown_kind_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"key 'kind': 'verticl' is not one of.*'vertical'"):
        parse_job({"kind": "verticl"}, source="t")


def test_missing_kind_is_named_when_keys_belong_to_another_kind(tmp_path: Path) -> None:
    text = (EXAMPLES / "analytics" / "job.toml").read_text().replace('kind = "analytics"\n', "")
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_job(path)
    msg = str(err.value)
    assert "key 'kind' is missing" in msg and 'add kind = "analytics"' in msg
    assert "columns" in msg and "table" in msg
    # `fedsilo query` needs an analytics job anyway: there a missing kind means analytics.
    assert load_analytics_job(path).table == "transactions"
    vertical = (EXAMPLES / "vertical_breast_cancer" / "job.toml").read_text()
    path.write_text(vertical.replace('kind = "vertical"\n', ""))
    with pytest.raises(ConfigError, match=r"key 'kind' is missing.*add kind = \"vertical\""):
        load_job(path)


def test_a_job_of_another_kind_is_refused_where_one_kind_is_needed() -> None:
    with pytest.raises(ConfigError, match=r"is a vertical job .* an analytics job is needed"):
        load_analytics_job(EXAMPLES / "vertical_breast_cancer" / "job.toml")
    with pytest.raises(ConfigError, match=r"is an analytics job .* a vertical job is needed"):
        load_vertical_job(EXAMPLES / "analytics" / "job.toml")
    with pytest.raises(ConfigError, match=r"analytics job.*fedsilo.query"):
        as_training_job(EXAMPLES / "analytics" / "job.toml")


def test_rounds_override_sets_epochs_or_trees_of_a_vertical_job() -> None:
    lr = load_vertical_job(EXAMPLES / "vertical_breast_cancer" / "job.toml")
    boost = load_vertical_job(EXAMPLES / "vertical_breast_cancer" / "secureboost.toml")
    assert (lr.rounds, boost.rounds) == (6, 10)
    lr2, boost2 = lr.with_overrides(rounds=2, seed=3), boost.with_overrides(rounds=3)
    assert lr2.hetero_lr.epochs == 2 and lr2.rounds == 2 and lr2.seed == 3
    assert boost2.secureboost.n_trees == 3 and boost2.algorithm is VerticalAlgorithm.SECUREBOOST
    assert lr2.hetero_lr.learning_rate == lr.hetero_lr.learning_rate  # the rest unchanged
    assert lr2.guest.path == lr.guest.path


def test_server_and_party_configs_share_the_explainer(tmp_path: Path) -> None:
    server = tmp_path / "server.toml"
    server.write_text('listen = "127.0.0.1:1"\nrun_dir = "runs"\nmax_mesage_mb = 4\n')
    with pytest.raises(ConfigError) as err:
        load_server_config(server)
    assert "key 'max_mesage_mb' is not a known key. Did you mean 'max_message_mb'?" in str(
        err.value
    )
    party = tmp_path / "party.toml"
    party.write_text((EXAMPLES / "deploy" / "party_a.toml").read_text() + "\n[privcy]\n")
    with pytest.raises(
        ConfigError, match=r"key 'privcy' is not a known key. Did you mean 'privacy'"
    ):
        load_party_config(party)
    with pytest.raises(ConfigError, match=r"party configuration file .*nope\.toml does not exist"):
        load_party_config(tmp_path / "nope.toml")


def test_job_is_a_discriminated_union_for_pydantic() -> None:
    from pydantic import TypeAdapter

    from fedsilo.jobs import Job

    job = load_job(EXAMPLES / "vertical_breast_cancer" / "job.toml")
    raw = job.model_dump(mode="json", exclude_unset=True)
    assert type(TypeAdapter(Job).validate_python(raw)) is VerticalJobConfig
    assert (
        type(
            TypeAdapter(Job).validate_python(
                {"data": {"dataset": "digits"}} | {"kind": "horizontal"}
            )
        )
        is JobConfig
    )


def test_a_horizontal_job_does_not_import_the_vertical_or_analytics_extras() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fedsilo\n"
        f"job = fedsilo.load_job({str(EXAMPLES / 'mnist_3orgs.toml')!r})\n"
        "extras = ('phe', 'tenseal', 'private_set_intersection', 'duckdb', 'sqlglot')\n"
        "print(job.kind, [m for m in extras if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "horizontal []"


def test_analytics_job_keys_get_did_you_mean_too() -> None:
    from fedsilo.analytics.config import parse_analytics_job

    raw = {
        "table": "cells",
        "data": {"dataset": "breast-cancer", "num_parties": 2},
        "columns": {"label": {"type": "category", "categories": ["malignant", "benign"]}},
        "privacy": {"mechanism": "none"},
        "min_grup_size": 5,
    }
    with pytest.raises(ConfigError, match=r"key 'min_grup_size' .*Did you mean 'min_group_size'"):
        parse_analytics_job(raw, source="t")
