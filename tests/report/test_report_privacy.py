"""The report's Privacy section says what the job's DP level is: client-level DP as the
coordinator's one epsilon for the federation, record-level DP with each party's own spend."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

import fedsilo
from fedsilo.config import parse_job
from fedsilo.report import render_report
from fedsilo.report.privacy import privacy_section
from tests.conftest import small_job
from tests.report.report_sample import PARTIES, make_metrics

PER_PARTY_HEAD = "<th class='text'>party</th><th>epsilon</th>"


def _client_dp_run(
    tmp_path: Path, *, parties: int, fraction: float, noise: str, adaptive: bool
) -> str:
    """A short client-DP simulation's report.html (breast-cancer, logreg)."""
    job = parse_job(
        small_job(
            rounds=2,
            data={"num_parties": parties, "partition": "iid", "min_partition_size": 5},
            selection={"fraction": fraction, "min_parties": 2},
            privacy={
                "delta": 1e-5,
                "secure_aggregation": {"enabled": noise == "distributed"},
                "client_dp": {
                    "enabled": True,
                    "noise": noise,
                    "noise_multiplier": 0.7,
                    "clip_norm": 0.5,
                    "adaptive_clipping": adaptive,
                },
            },
        ),
        source="test",
    )
    paths = fedsilo.simulate(job).save(tmp_path)
    return html.unescape(paths["report"].read_text())


def _section(page: str) -> str:
    start = page.index("<section id='privacy'>")
    return page[start : page.index("</section>", start)]


def test_a_client_dp_report_describes_the_coordinators_epsilon_and_the_mechanism(
    tmp_path: Path,
) -> None:
    # as examples/client_dp.toml: a fixed-size selection, noise added by the parties
    section = _section(
        _client_dp_run(tmp_path, parties=10, fraction=0.5, noise="distributed", adaptive=True)
    )

    assert "client-level differential privacy (DP-FedAvg): epsilon <strong>" in section
    assert "one figure for the whole federation" in section
    assert "The coordinator accounts it (rdp)" in section
    assert "it is not in the parties' privacy ledgers" in section
    assert "one party's whole data replaced by any other (replace-one" in section
    assert "<td class='text'>noise multiplier z</td><td class='text'>0.7</td>" in section
    assert "adaptive (quantile tracking, Andrew et al. 2021): 0.5 in the first round" in section
    assert "5 of 10 parties (fixed size); sample rate 0.5" in section
    assert "by the parties: each selected party adds its share" in section
    assert "<td class='text'>releases accounted</td><td class='text'>2 at z 0.7</td>" in section
    assert "accounted by the coordinator for the whole federation (client level)" in section
    # nothing of the record-level view: no per-party table, caption or wording
    assert PER_PARTY_HEAD not in section
    assert "<tbody></tbody>" not in section
    assert "maximum over parties" not in section
    assert "each party accounts its own spend" not in section


def test_client_dp_with_every_party_fixed_clipping_and_coordinator_noise(tmp_path: Path) -> None:
    section = _section(
        _client_dp_run(tmp_path, parties=3, fraction=1.0, noise="coordinator", adaptive=False)
    )

    assert "add or remove one party's whole data (add/remove" in section
    assert "<td class='text'>clip norm C</td><td class='text'>0.5 (fixed)</td>" in section
    assert "3 of 3 parties (fixed size); sample rate 1" in section
    assert "by the coordinator, to the sum of the parties' clipped updates" in section
    assert PER_PARTY_HEAD not in section and "maximum over parties" not in section


def _record_dp_metrics() -> dict[str, Any]:
    metrics = make_metrics(rounds=3)
    for r, row in enumerate(metrics["history"], start=1):
        spends = {
            p: {
                "epsilon": 0.5 * r + i / 10,
                "noise_multiplier": 1.1,
                "max_grad_norm": 1.0,
                "steps": 7 * r,
                "max_epsilon": 4.0,
            }
            for i, p in enumerate(PARTIES)
        }
        row["privacy"] = {
            "level": "record",
            "epsilon": max(s["epsilon"] for s in spends.values()),
            "delta": 1e-5,
            "accounting": "rdp",
            "parties": spends,
        }
    metrics["final"]["privacy"] = metrics["history"][-1]["privacy"]
    return metrics


def test_a_record_dp_report_keeps_each_partys_spend() -> None:
    section = privacy_section(_record_dp_metrics())

    assert section.startswith(
        "<section id='privacy'><h2>Privacy</h2><p>record-level differential privacy: epsilon "
        "<strong>1.7</strong> at delta 1e-05 after the last round (maximum over parties; each "
        "party accounts its own spend with rdp).</p><figure>"
    )
    assert "maximum over parties (bold) and each party (thin)." in section
    assert PER_PARTY_HEAD in section
    for i, party in enumerate(PARTIES):
        assert (
            f"<tr><td class='text'>{party}</td><td>{1.5 + i / 10:.4g}</td><td>1.1</td>"
            "<td>1</td><td>21</td><td>4</td></tr>"
        ) in section
    assert "client-level" not in section and "coordinator" not in section


def test_the_per_party_table_shows_four_significant_digits_in_the_rendered_page() -> None:
    metrics = _record_dp_metrics()
    final = metrics["final"]["privacy"]["parties"]
    final[PARTIES[0]] |= {  # a noise multiplier found for a target epsilon, as parties report it
        "noise_multiplier": 4.63360595703125,
        "max_grad_norm": 0.123456789,
        "max_epsilon": 2.4999999,
    }
    final[PARTIES[1]]["max_epsilon"] = None

    page = _section(html.unescape(render_report(metrics)))

    assert (
        f"<tr><td class='text'>{PARTIES[0]}</td><td>1.5</td><td>4.634</td><td>0.1235</td>"
        "<td>21</td><td>2.5</td></tr>"
    ) in page
    assert f"<tr><td class='text'>{PARTIES[1]}</td><td>1.6</td><td>1.1</td><td>1</td>" in page
    assert "<td>21</td><td>none</td></tr>" in page
    assert "4.63360595703125" not in page and "0.123456789" not in page


@pytest.mark.parametrize("level", ["record", "client"])
def test_a_job_without_dp_has_no_privacy_section(level: str) -> None:
    metrics = make_metrics(rounds=2)
    metrics["final"]["privacy"] = {"level": level}  # no round recorded a spend
    assert privacy_section(metrics) == ""
    assert "id='privacy'" not in render_report(metrics)
