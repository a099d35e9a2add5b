"""party.toml ``threads``: the torch threads a party process computes with (default 1, as every
simulated party, so a deployed party trains as its simulation does); refused at load unless a
positive integer."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from fedsilo.deploy.config import load_party_config
from fedsilo.errors import ConfigError
from tests.deploy.harness import deployment, token, write_party_csvs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "deploy"


def test_a_party_computes_on_one_thread_unless_its_toml_says_otherwise() -> None:
    assert load_party_config(EXAMPLES / "party_a.toml").threads == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "Input should be greater than or equal to 1 (got 0)"),
        ("-2", "Input should be greater than or equal to 1 (got -2)"),
        ("1.5", "Input should be a valid integer (got 1.5)"),
        ('"4"', "Input should be a valid integer (got '4')"),
        ("true", "Input should be a valid integer (got True)"),
    ],
)
def test_a_bad_threads_value_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, value: str, reason: str
) -> None:
    toml = tmp_path / "party.toml"
    toml.write_text(f'name = "org-a"\nserver = "127.0.0.1:1"\ndata = "a.csv"\nthreads = {value}\n')

    with pytest.raises(ConfigError) as err:
        load_party_config(toml)

    assert str(err.value) == (
        f"{toml}: the party configuration is invalid:\n  key 'threads': {reason}"
    )


def _reported_threads(log: Path, party: str, timeout_s: float = 120) -> int:
    """The torch threads the party process says it computes on (its log, at start)."""
    pattern = re.compile(rf"party {party}: torch computes on (\d+) thread")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text(errors="replace")) if log.exists() else None
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"party {party} did not report its threads:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_the_party_process_computes_on_the_threads_of_its_toml_not_the_environment(
    tmp_path: Path,
) -> None:
    # with OMP_NUM_THREADS and MKL_NUM_THREADS 2 (not the harness's 1) torch starts on 2
    # threads given 2 cores; party.toml decides: 1 unless it says otherwise
    more = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    parties = ("org-a", "org-b")
    csvs = write_party_csvs(tmp_path, parties)
    settings = {"org-a": "", "org-b": "threads = 3\n"}
    with deployment(tmp_path, parties=parties, mtls=False) as dep:  # no server: they retry
        for p in parties:
            toml = tmp_path / f"{p}.toml"
            toml.write_text(
                f'name = "{p}"\nserver = "{dep.address}"\ntoken = "{token(p)}"\n'
                f'data = "{csvs[p]}"\n{settings[p]}'
            )
            dep.spawn(p, "party", "--config", str(toml), "--insecure", env=more)

        reported = {p: _reported_threads(tmp_path / f"{p}.log", p) for p in parties}

    assert reported == {"org-a": 1, "org-b": 3}
