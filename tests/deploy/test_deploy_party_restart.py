"""A party process killed mid-job and restarted gets its setup again and rejoins the rounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.harness import deployment, job_done, job_toml, write_party_csvs

pytestmark = pytest.mark.slow

ROUNDS = 300  # ~30 ms each: long enough for org-c to restart (a few seconds)


def test_restarted_party_is_set_up_again_and_rejoins(tmp_path: Path) -> None:
    csvs = write_party_csvs(tmp_path)
    text = job_toml(csvs, rounds=ROUNDS)

    with deployment(tmp_path) as dep:
        dep.start_horizontal(csvs)
        job_id = dep.submit(text)

        def at_round(n: int):  # type: ignore[no-untyped-def]
            return lambda s: any(j.job_id == job_id and j.round >= n for j in s.jobs)

        dep.wait_status(at_round(2))
        dep.kill("org-c")  # its setup (model, preprocessing) dies with it
        dep.start_party("org-c")
        status = dep.wait_status(job_done(job_id))
        server_log = dep.log("server")

    job = next(j for j in status.jobs if j.job_id == job_id)
    assert job.round == ROUNDS
    assert "re-sending setup to restarted parties: org-c" in server_log
    done = re.findall(rf"round (\d+)/{ROUNDS} done(.*)", server_log)
    assert len(done) == ROUNDS
    assert "org-c" not in done[-1][1]  # the last round has org-c back
    assert "before setup" not in "".join(d[1] for d in done[-3:])
