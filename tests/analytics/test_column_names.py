"""Columns have the names the data has: spaces, quotes, semicolons, read as names, never as SQL.

A name is declared ``[columns."mean radius"]`` and written ``"mean radius"`` in SQL; output
labels and GROUP BY keys show it as written. A declared column the data lacks is one error at
the header check, before any party runs the query.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo import preflight
from fedsilo.analytics.config import parse_analytics_job
from fedsilo.analytics.plan import make_plan
from fedsilo.analytics.run import query, run_query
from fedsilo.analytics.sql import parse_query
from fedsilo.cli import app
from fedsilo.data.builtin import load_builtin
from fedsilo.errors import ConfigError, SchemaError, UnsupportedError

from .conftest import transport_for

BREAST_CANCER_JOB = """\
kind = "analytics"
name = "cells"
table = "cells"

[data]
dataset = "breast-cancer"
num_parties = 3

[columns.label]
type = "category"
categories = ["malignant", "benign"]

[columns."mean radius"]
type = "number"
lower = 0
upper = 40

[privacy]
mechanism = "none"

[policy]
allow_exact = true
"""

EVIL = 'x"); DROP TABLE t; --'  # a number column
EVIL_GROUP = 'g;"k'  # a category column


def _pooled_breast_cancer() -> pd.DataFrame:
    ds = load_builtin("breast-cancer")
    assert ds.features is not None
    frame = ds.features
    frame["label"] = [ds.class_names[i] for i in ds.labels]
    return frame


def test_builtin_dataset_spaced_column_avg_by_label_equals_pandas(tmp_path: Path) -> None:
    job = tmp_path / "cells.toml"
    job.write_text(BREAST_CANCER_JOB)
    sql = (
        'SELECT label, AVG("mean radius"), COUNT(*) AS n FROM cells '
        'WHERE "mean radius" >= 12.5 GROUP BY label'
    )
    res = CliRunner().invoke(
        app, ["query", str(job), sql, "--format", "json", "--ledgers", str(tmp_path / "l")]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    pooled = _pooled_breast_cancer()  # every party's share together
    kept = pooled[pooled["mean radius"] >= 12.5]
    want = kept.groupby("label")["mean radius"].agg(["mean", "size"])
    assert doc["group_by"] == ["label"]
    assert [r["label"] for r in doc["rows"]] == ["malignant", "benign"]
    for row in doc["rows"]:
        answers = row["answers"]
        assert set(answers) == {'AVG("mean radius")', "n"}
        assert answers["n"]["value"] == want.loc[row["label"], "size"]
        assert answers['AVG("mean radius")']["value"] == pytest.approx(
            want.loc[row["label"], "mean"], rel=1e-12
        )
    # the Python API, same answer
    r = query(
        job, 'SELECT label, AVG("mean radius") FROM cells GROUP BY label', ledger_dir=tmp_path
    )
    assert r.labels == ['AVG("mean radius")']
    means = pooled.groupby("label")["mean radius"].mean()
    assert [c[0].value for c in r.cells] == pytest.approx(
        [means["malignant"], means["benign"]], rel=1e-12
    )


def _evil_job(parties: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    return parse_analytics_job(
        {
            "table": "t",
            "columns": {
                EVIL: {"type": "number", "lower": 0, "upper": 100},
                EVIL_GROUP: {"type": "category", "categories": ["a;b", 'c"d']},
            },
            "parties": parties or [{"name": "p0", "path": "unused.csv"}],
            "privacy": {"mechanism": "none"},
            "policy": {"allow_exact": True},
            **extra,
        },
        source="test",
    )


def _evil_frames() -> list[pd.DataFrame]:
    rng = np.random.default_rng(3)
    return [
        pd.DataFrame(
            {
                EVIL: rng.uniform(-10, 110, 40).round(2),
                EVIL_GROUP: rng.choice(["a;b", 'c"d'], 40),
            }
        )
        for _ in range(2)
    ]


EVIL_SQL = (
    'SELECT "g;""k", SUM("x""); DROP TABLE t; --") AS s, COUNT(*) AS n FROM t '
    'WHERE "x""); DROP TABLE t; --" > 5 GROUP BY "g;""k"'
)


def _evil_expected(frames: list[pd.DataFrame]) -> dict[str, tuple[float, int]]:
    df = pd.concat(frames, ignore_index=True)
    df = df[df[EVIL] > 5]
    clipped = df[EVIL].clip(0, 100)
    return {
        g: (float(clipped[df[EVIL_GROUP] == g].sum()), int((df[EVIL_GROUP] == g).sum()))
        for g in ("a;b", 'c"d')
    }


def test_names_with_quotes_and_semicolons_are_read_as_names_not_sql() -> None:
    job = _evil_job([{"name": "p0", "path": "a.csv"}, {"name": "p1", "path": "b.csv"}])
    frames = _evil_frames()
    r = run_query(job, EVIL_SQL, transport=transport_for(job, frames))
    assert r.group_by == (EVIL_GROUP,)
    assert r.groups == [("a;b",), ('c"d',)]
    want = _evil_expected(frames)
    for (g,), (s, n) in zip(r.groups, r.cells, strict=True):
        assert s.value == pytest.approx(want[str(g)][0], rel=1e-12)
        assert n.value == want[str(g)][1]
    unquoted = f"SELECT SUM({EVIL}) FROM t"  # the name unquoted is not a column: refused
    with pytest.raises(UnsupportedError, match="double quotes"):
        parse_query(unquoted, job)


def test_names_with_quotes_and_semicolons_from_csv_files(tmp_path: Path) -> None:
    frames = _evil_frames()
    parties = []
    for i, f in enumerate(frames):
        f.to_csv(tmp_path / f"p{i}.csv", index=False)
        parties.append({"name": f"p{i}", "path": str(tmp_path / f"p{i}.csv")})
    job = _evil_job(parties)
    r = query(job, EVIL_SQL, ledger_dir=tmp_path / "ledgers")
    want = _evil_expected(frames)
    for (g,), (s, n) in zip(r.groups, r.cells, strict=True):
        assert s.value == pytest.approx(want[str(g)][0], rel=1e-12)
        assert n.value == want[str(g)][1]


def test_a_column_named_like_a_histogram_key_keeps_its_own_values() -> None:
    """A column's clipped values and a histogram's bin indices never share an alias."""
    odd = "hist:score[0.0,50.0,100.0]"
    job = parse_analytics_job(
        {
            "table": "t",
            "columns": {
                odd: {"type": "number", "lower": 0, "upper": 1000},
                "score": {"type": "number", "lower": 0, "upper": 100},
            },
            "parties": [{"name": "p0", "path": "unused.csv"}],
            "privacy": {"mechanism": "none"},
            "policy": {"allow_exact": True},
        },
        source="test",
    )
    frame = pd.DataFrame({odd: [500.0, 700.0, 900.0], "score": [10.0, 60.0, 70.0]})
    sql = f'SELECT SUM("{odd}") AS s, HISTOGRAM(score, BINS=[0, 50, 100]) AS h FROM t'
    r = run_query(job, sql, transport=transport_for(job, [frame]))
    s, h = r.cells[0]
    assert s.value == pytest.approx(2100.0)
    assert h.value == [1.0, 2.0]


@pytest.mark.parametrize("name", ["", "a\nb", "tab\there", "nul\x00"])
def test_empty_names_and_control_characters_are_refused_clearly(name: str) -> None:
    with pytest.raises(ConfigError, match="without control characters"):
        parse_analytics_job(
            {
                "table": "t",
                "columns": {name: {"type": "number", "lower": 0, "upper": 1}},
                "parties": [{"name": "p0", "path": "a.csv"}],
                "privacy": {"mechanism": "none"},
            },
            source="test",
        )


def test_party_rechecks_and_rerenders_the_received_filter() -> None:
    job = _evil_job()
    plan = make_plan(parse_query(EVIL_SQL, job), job)
    sent = plan.__class__(**{**plan.__dict__, "where_sql": '"x""); DROP TABLE t; --">5'})
    assert sent.check_against(job).where_sql == '"x""); DROP TABLE t; --" > 5'


def test_builtin_dataset_missing_column_fails_at_the_header_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "cells.toml"
    job.write_text(BREAST_CANCER_JOB.replace('"mean radius"', "mean_radius"))

    def no_parties(*args: object, **kwargs: object) -> None:
        raise AssertionError("the query ran past the header check")

    monkeypatch.setattr("fedsilo.analytics.run.simulation_transport", no_parties)
    with pytest.raises(SchemaError) as caught:
        query(job, "SELECT label, AVG(mean_radius) FROM cells GROUP BY label", ledger_dir=tmp_path)
    msg = str(caught.value)
    for text in (
        "[data] dataset 'breast-cancer'",
        "lacks the declared column(s) ['mean_radius']",
        "'mean radius'",
        "and 11 more",  # 31 columns found, 20 shown
        "Did you mean 'mean radius'?",
        '[columns."mean radius"]',
    ):
        assert text in msg, text
    res = CliRunner().invoke(
        app,
        ["query", str(job), "SELECT COUNT(*) FROM cells", "--ledgers", str(tmp_path / "l")],
    )
    assert res.exit_code == 2
    assert "refused" not in res.output
    assert res.output.count("lacks the declared column") == 1


def test_party_file_missing_column_names_party_file_column_and_how_many_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wide.csv"
    pd.DataFrame({f"c{i:02d}": [1.0] for i in range(25)}).to_csv(path, index=False)
    job = parse_analytics_job(
        {
            "table": "t",
            "columns": {"c 01": {"type": "number", "lower": 0, "upper": 1}},
            "parties": [{"name": "bank-a", "path": str(path)}],
            "privacy": {"mechanism": "none"},
        },
        source="test",
    )
    with pytest.raises(SchemaError) as caught:
        preflight.check_headers(job)
    msg = str(caught.value)
    for text in ("party 'bank-a'", str(path), "['c 01']", "'c00'", "and 5 more"):
        assert text in msg, text


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT AVG('x\"); DROP TABLE t; --') FROM t", "text literal, not a column"),
        ('SELECT COUNT(*) FROM t WHERE "g;k = 1', "written in double quotes"),
        ('SELECT AVG("x") FROM t', "unknown column 'x'"),
    ],
)
def test_quoting_mistakes_are_refused_with_how_to_quote(sql: str, fragment: str) -> None:
    with pytest.raises(UnsupportedError, match=re.escape(fragment)):
        parse_query(sql, _evil_job())


def test_docs_builtin_example_with_a_spaced_column_runs(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    block = next(b for b in docs.split("```toml\n")[1:] if '[columns."mean radius"]' in b)
    job = tmp_path / "cells.toml"
    job.write_text("seed = 1\n" + block.split("```")[0])  # seeded noise: a steady test
    sql = re.search(r"fedsilo query cells.toml '([^']+)'", docs)
    assert sql is not None
    r = query(job, sql.group(1), ledger_dir=tmp_path)
    assert r.group_by == ("label",) and r.labels == ['AVG("mean radius")']
    assert all(5 < float(str(c[0].value)) < 30 for c in r.cells)
