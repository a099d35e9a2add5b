from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedsilo.errors import ConfigError, DataError
from fedsilo.vertical.config import load_vertical_job, parse_vertical_job
from fedsilo.vertical.data import load_party_table


def _job(**extra: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "kind": "vertical",
        "parties": [
            {"name": "bank", "builtin": "breast_cancer/guest", "label": "target"},
            {"name": "shop", "builtin": "breast_cancer/host"},
        ],
    }
    job.update(extra)
    return job


def test_defaults_and_roles() -> None:
    job = parse_vertical_job(_job())
    assert job.guest.name == "bank" and [h.name for h in job.hosts] == ["shop"]
    assert job.he.scheme.value == "ckks" and job.hetero_lr.epochs == 10


def test_misspelled_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"hetero_lr.learning_rat.*Did you mean 'hetero_lr.learning_rate'"
    ):
        parse_vertical_job(_job(hetero_lr={"learning_rat": 0.1}))


def test_exactly_one_label_holder() -> None:
    raw = _job()
    raw["parties"][1]["label"] = "y"
    with pytest.raises(ConfigError, match="exactly one party must set 'label'"):
        parse_vertical_job(raw)


def test_unknown_scheme_and_bad_values_name_their_keys() -> None:
    with pytest.raises(ConfigError, match=r"he\.scheme"):
        parse_vertical_job(_job(he={"scheme": "rsa"}))
    with pytest.raises(ConfigError, match=r"hetero_lr\.batch_size"):
        parse_vertical_job(_job(hetero_lr={"batch_size": 0}))


def test_party_needs_one_data_source() -> None:
    raw = _job()
    raw["parties"][0]["path"] = "x.csv"
    with pytest.raises(ConfigError, match="exactly one of 'path' or 'builtin'"):
        parse_vertical_job(raw)


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(
        'kind = "vertical"\n[[parties]]\nname = "a"\npath = "a.csv"\nlabel = "y"\n'
        '[[parties]]\nname = "b"\npath = "b.csv"\n'
    )
    job = load_vertical_job(tmp_path / "job.toml")
    assert job.parties[0].path == tmp_path / "a.csv"


def test_data_errors_name_party_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "g.csv").write_text("id,y,x\n1,0,0.5\n2,2,0.1\n")
    job = parse_vertical_job(
        _job(
            parties=[
                {"name": "bank", "path": str(tmp_path / "g.csv"), "label": "y"},
                {"name": "shop", "path": str(tmp_path / "g.csv"), "id_column": "cust"},
            ]
        )
    )
    with pytest.raises(
        DataError,
        match=r"party 'bank' file .*g.csv: label column 'y' holds '0', '2'.*label_positive",
    ):
        load_party_table(job.parties[0])
    with pytest.raises(DataError, match=r"party 'shop' file .*has no column 'cust'"):
        load_party_table(job.parties[1])
