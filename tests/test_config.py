from __future__ import annotations

from pathlib import Path

import pytest

from fedsilo.config import load_job, parse_job
from fedsilo.errors import ConfigError
from tests.conftest import small_job


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_example_jobs_validate() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("mnist_3orgs.toml", "hospitals_breast_cancer.toml", "banks_csv/job.toml"):
        job = load_job(root / name)
        assert job.rounds >= 1


def test_misspelled_key_names_the_key_and_suggests_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\ndataset = "digits"\n[training]\nlr = 0.1\n')
    with pytest.raises(ConfigError) as err:
        load_job(path)
    msg = str(err.value)
    assert "training.lr" in msg
    assert "Did you mean 'training.learning_rate'" in msg
    assert str(path) in msg


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("training.lr", "training.learning_rate"),
        ("training.learning_rte", "training.learning_rate"),
        ("model.hiden", "model.hidden"),
        ("aggregation.aggregater", "aggregation.aggregator"),
        ("rouns", "rounds"),
    ],
)
def test_suggestions_come_from_the_same_section(typo: str, meant: str) -> None:
    section, _, leaf = typo.rpartition(".")
    raw = small_job()
    if section:
        raw[section] = {**raw.get(section, {}), leaf: 1}
    else:
        raw[leaf] = 1
    with pytest.raises(ConfigError, match=f"Did you mean '{meant}'"):
        parse_job(raw, source="t")


def test_unknown_enum_value_lists_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\ndataset = "digits"\n[aggregation]\naggregator = "avg"\n')
    with pytest.raises(ConfigError, match=r"aggregation.aggregator.*'avg'.*mean"):
        load_job(path)


def test_invalid_toml_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "rounds = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job(path)


def test_missing_job_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_job(tmp_path / "nope.toml")


def test_two_data_sources_are_refused() -> None:
    raw = small_job(parties=[{"name": "a", "path": "a.csv"}])
    with pytest.raises(ConfigError, match="exactly one data source"):
        parse_job(raw, source="t")


def test_file_parties_need_a_label_column() -> None:
    raw = small_job(data={"dataset": None}, parties=[{"name": "a", "path": "a.csv"}])
    raw["data"] = {}
    with pytest.raises(ConfigError, match=r"data.label"):
        parse_job(raw, source="t")


def test_out_of_range_value_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"key 'rounds'.*got 0"):
        parse_job(small_job(rounds=0), source="t")


def test_min_parties_above_party_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_parties"):
        parse_job(small_job(selection={"min_parties": 5}), source="t")


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\nlabel = "y"\n[[parties]]\nname = "a"\npath = "a.csv"\n')
    job = load_job(path)
    assert job.parties[0].path == tmp_path / "a.csv"


def test_overrides_are_validated() -> None:
    job = parse_job(small_job(), source="t")
    assert job.with_overrides(rounds=7, seed=9).rounds == 7
    with pytest.raises(ConfigError):
        job.with_overrides(rounds=-1)


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (
            {"partition": "dirichlet", "column": "region"},
            r'data\.column splits rows only with partition = "by-column" \(this job has '
            r'partition = "dirichlet"\)',
        ),
        (
            {"partition": "iid", "alpha": 0.3},
            r'data\.alpha sets the skew of partition = "dirichlet" or "quantity-skew" \(this '
            r'job has partition = "iid"\)',
        ),
    ],
)
def test_a_key_the_chosen_split_does_not_read_is_refused(
    data: dict[str, object], refusal: str
) -> None:
    raw = small_job()
    raw["data"] = {**raw["data"], **data}
    with pytest.raises(ConfigError, match=refusal):
        parse_job(raw, source="t")
    for key in data:  # the split that reads it accepts it
        if key != "partition":
            kept = {"column": "by-column", "alpha": "quantity-skew"}[key]
            parse_job({**raw, "data": {**raw["data"], "partition": kept}}, source="t")
