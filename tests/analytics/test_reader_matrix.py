"""`fedsilo query` over ordinary exports: exact answers equal pandas on the pooled rows, or exit 2.

Writers: pandas ``to_csv`` (with and without missing values), numpy ``savetxt``, a
spreadsheet-style export (every field quoted, CRLF) and Parquet of the same rows. Columns hold
the cases of issue 12: Yes/No, True/False (a pandas bool column), T/F, ``2024.0`` years, ``01``
codes, dates used as categories. Messy files (``nan`` text in a number column, ``1,234.50``,
decimal commas, values outside the categories, ``1`` for ``01``) exit 2 naming party, file,
column and count.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo.cli import app

GROUPS = ("smoker", "flag", "tf", "year", "code", "visit")
CATS: dict[str, list[Any]] = {
    "smoker": ["Yes", "No"],
    "flag": ["True", "False"],
    "tf": ["T", "F"],
    "year": [2024, 2025],
    "code": ["01", "02"],
    "visit": ["03/01/2025", "04/01/2025"],
}


def party_frame(seed: int, n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "smoker": rng.choice(["Yes", "No"], n),
            "flag": rng.choice([True, False], n),
            "tf": rng.choice(["T", "F"], n),
            "year": rng.choice([2024, 2025], n),
            "code": rng.choice(["01", "02"], n),
            "visit": rng.choice(["03/01/2025", "04/01/2025"], n),
            "amount": np.round(rng.uniform(0, 300, n), 2),
        }
    )


def with_missing(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["year"] = out["year"].astype("float64")  # pandas writes 2024.0 then
    out.loc[[1, 5], "year"] = np.nan
    out.loc[[2, 3], "amount"] = np.nan
    return out


def write(df: pd.DataFrame, path: Path, writer: str) -> Path:
    if writer == "parquet":
        path = path.with_suffix(".parquet")
        df.to_parquet(path)
    elif writer == "savetxt":
        np.savetxt(
            path,
            df.astype(str).to_numpy(),
            fmt="%s",
            delimiter=",",
            header=",".join(df.columns),
            comments="",
        )
    elif writer == "spreadsheet":
        with path.open("w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            w.writerow(df.columns)
            w.writerows(df.astype(object).where(df.notna(), "").itertuples(index=False))
    else:
        df.to_csv(path, index=False)
    return path


def job_file(tmp: Path, paths: list[Path], *, skip: bool = False, other: bool = False) -> Path:
    lines = ['kind = "analytics"', 'table = "t"', "[privacy]", 'mechanism = "none"']
    lines += ["[policy]", "allow_exact = true"]  # the simulated parties' switch for exact answers
    for i, p in enumerate(paths):
        lines += ["[[parties]]", f'name = "p{i}"', f"path = {json.dumps(str(p))}"]
    for c, cats in CATS.items():
        lines += [f"[columns.{c}]", 'type = "category"', f"categories = {json.dumps(cats)}"]
        if skip and c == "year":
            lines.append('missing = "skip"')
        if other and c == "smoker":
            lines.append("other = true")
    lines += ["[columns.amount]", 'type = "number"', "lower = 0", "upper = 1000"]
    if skip:
        lines.append('missing = "skip"')
    path = tmp / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(job: Path, sql: str) -> Any:
    result = CliRunner().invoke(
        app, ["query", str(job), sql, "--format", "json", "--ledgers", str(job.parent / "run")]
    )
    return result


def answers(job: Path, group: str) -> dict[str, tuple[float, float | None]]:
    res = run(job, f"SELECT {group}, COUNT(*) AS n, AVG(amount) AS a FROM t GROUP BY {group}")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    return {
        str(r[group]): (r["answers"]["n"]["value"], r["answers"]["a"]["value"]) for r in doc["rows"]
    }


def pandas_answers(frames: list[pd.DataFrame], group: str) -> dict[str, tuple[float, float | None]]:
    df = pd.concat(frames, ignore_index=True)
    out = {}
    for cat in CATS[group] + (["other"] if group == "smoker" and "other" in df else []):
        key = df[group].map(lambda v: str(int(v)) if isinstance(v, float) and v == v else str(v))
        rows = df[key == str(cat)]
        mean = rows["amount"].mean()
        out[str(cat)] = (float(len(rows)), None if np.isnan(mean) else float(mean))
    return out


def same(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    assert ours.keys() == ref.keys()
    for k, (n, a) in ref.items():
        assert ours[k][0] == n, (k, ours[k], ref[k])
        assert (ours[k][1] is None) == (a is None)
        if a is not None:
            assert ours[k][1] == pytest.approx(a, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("missing", [False, True])
def test_every_writer_gives_the_pandas_answer_and_csv_equals_parquet(
    tmp_path: Path, missing: bool
) -> None:
    frames = [party_frame(1), party_frame(2)]
    if missing:
        frames = [with_missing(f) for f in frames]
    results: dict[str, dict[str, Any]] = {}
    for writer in ("pandas", "savetxt", "spreadsheet", "parquet"):
        if missing and writer == "savetxt":
            continue  # savetxt of str() writes 'nan': tested below as a messy file
        d = tmp_path / writer
        d.mkdir()
        paths = [write(f, d / f"p{i}.csv", writer) for i, f in enumerate(frames)]
        job = job_file(d, paths, skip=missing)
        results[writer] = {g: answers(job, g) for g in GROUPS}
        for g in GROUPS:
            same(results[writer][g], pandas_answers(frames, g))
    for writer, res in results.items():
        assert res == results["parquet"], writer  # identical, bit for bit


def test_filter_and_group_agree_on_yes_no(tmp_path: Path) -> None:
    frames = [party_frame(3), party_frame(4)]
    paths = [write(f, tmp_path / f"p{i}.csv", "pandas") for i, f in enumerate(frames)]
    job = job_file(tmp_path, paths)
    res = run(job, "SELECT COUNT(*) AS n FROM t WHERE smoker = 'Yes' AND flag = 'True'")
    assert res.exit_code == 0, res.output
    pooled = pd.concat(frames)
    want = int(((pooled.smoker == "Yes") & pooled.flag).sum())
    assert json.loads(res.stdout)["rows"][0]["answers"]["n"]["value"] == want
    assert answers(job, "smoker")["Yes"][0] == (pooled.smoker == "Yes").sum()


def _messy(tmp_path: Path, column: str, values: list[str], **kw: bool) -> Any:
    good = party_frame(5)
    bad = party_frame(6).astype({column: object})
    for i, v in enumerate(values):
        bad.loc[i, column] = v
    paths = [write(good, tmp_path / "p0.csv", "pandas"), write(bad, tmp_path / "p1.csv", "pandas")]
    g = column if column in CATS else "smoker"  # a party reads the columns the query uses
    return run(job_file(tmp_path, paths, **kw), f"SELECT {g}, AVG(amount) AS a FROM t GROUP BY {g}")


@pytest.mark.parametrize(
    ("column", "values", "expect"),
    [
        ("amount", ["nan", "nan", "NA"], ["column 'amount'", "3 missing value(s)"]),
        (
            "amount",
            ["1,234.50", "146,5"],
            ["column 'amount'", "not a number", "row 1", "2 value(s)"],
        ),
        (
            "smoker",
            ["yes", "Maybe", "yes"],
            ["column 'smoker'", "3 value(s) outside", "'Maybe'", "'yes'"],
        ),
        ("code", ["1", "2"], ["column 'code'", "2 value(s) outside", "'1'", "'2'"]),
        ("year", ["2024.5"], ["column 'year'", "not an integer", "row 1", "1 value(s)"]),
        ("visit", ["2025-03-01"], ["column 'visit'", "1 value(s) outside"]),
    ],
)
def test_messy_files_exit_2_naming_party_file_column_count(
    tmp_path: Path, column: str, values: list[str], expect: list[str]
) -> None:
    res = _messy(tmp_path, column, values)
    assert res.exit_code == 2, res.output
    for text in ["party 'p1'", str(tmp_path / "p1.csv"), *expect]:
        assert text in res.output.replace("\n", " ").replace("  ", " ") or text in res.output


def test_nan_text_with_skip_is_missing_not_a_huge_value(tmp_path: Path) -> None:
    good, bad = party_frame(5), party_frame(6)
    bad_file = bad.astype({"amount": object})
    bad_file.loc[[0, 1], "amount"] = "nan"
    paths = [
        write(good, tmp_path / "p0.csv", "pandas"),
        write(bad_file, tmp_path / "p1.csv", "pandas"),
    ]
    job = job_file(tmp_path, paths, skip=True)
    bad.loc[[0, 1], "amount"] = np.nan
    same(answers(job, "smoker"), pandas_answers([good, bad], "smoker"))


def test_other_group_counts_undeclared_values(tmp_path: Path) -> None:
    good, bad = party_frame(5), party_frame(6)
    bad.loc[[0, 1, 2], "smoker"] = "Maybe"
    paths = [write(good, tmp_path / "p0.csv", "pandas"), write(bad, tmp_path / "p1.csv", "pandas")]
    ours = answers(job_file(tmp_path, paths, other=True), "smoker")
    pooled = pd.concat([good, bad])
    assert ours["other"][0] == 3
    assert sum(n for n, _ in ours.values()) == len(pooled)
    assert ours["other"][1] == pytest.approx(pooled.amount[pooled.smoker == "Maybe"].mean())


def test_clipping_notice_claims_no_clipping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = [party_frame(7), party_frame(8)]
    frames[1].loc[0, "amount"] = 5000.0
    paths = [write(f, tmp_path / f"p{i}.csv", "pandas") for i, f in enumerate(frames)]
    with caplog.at_level("INFO", logger="fedsilo.analytics.local"):
        res = run(job_file(tmp_path, paths), "SELECT AVG(amount) AS a FROM t")
    assert res.exit_code == 0, res.output
    notices = " ".join(json.loads(res.stdout)["notices"])
    assert "values clipped before summing" not in notices
    assert "clipped to their declared bounds" in notices
    logged = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert any("p1" in m and "0 value(s) clipped up" in m and "1 down to 1000" in m for m in logged)
    assert any("p0" in m and "0 value(s) clipped up" in m and "0 down to 1000" in m for m in logged)


def test_date_filter_is_text_at_every_party(tmp_path: Path) -> None:
    frames = [party_frame(9), party_frame(10)]
    frames[1]["visit"] = "03/01/2025"  # one party holds only the ambiguous spelling
    paths = [write(f, tmp_path / f"p{i}.csv", "pandas") for i, f in enumerate(frames)]
    res = run(job_file(tmp_path, paths), "SELECT COUNT(*) AS n FROM t WHERE visit = '03/01/2025'")
    assert res.exit_code == 0, res.output
    want = int((pd.concat(frames).visit == "03/01/2025").sum())
    assert json.loads(res.stdout)["rows"][0]["answers"]["n"]["value"] == want


def test_parquet_type_and_absent_column_are_refused_naming_party_file_column(
    tmp_path: Path,
) -> None:
    good, bad = party_frame(11), party_frame(12)
    bad["amount"] = bad["amount"] > 100  # a boolean column declared number
    paths = [
        write(good, tmp_path / "p0.csv", "parquet"),
        write(bad, tmp_path / "p1.csv", "parquet"),
    ]
    res = run(job_file(tmp_path, paths), "SELECT AVG(amount) AS a FROM t")
    assert res.exit_code == 2
    for text in ("party 'p1'", "p1.parquet", "'amount'", "declared number", "BOOLEAN"):
        assert text in res.output, text
    write(good.drop(columns=["code"]), paths[1], "parquet")
    res = run(job_file(tmp_path, paths), "SELECT code, COUNT(*) AS n FROM t GROUP BY code")
    assert res.exit_code == 2
    for text in ("party 'p1'", "p1.parquet", "lacks the declared column(s) ['code']"):
        assert text in res.output, text


def _typed_job(tmp: Path, paths: list[Path], fmt: str | None) -> Path:
    lines = ['kind = "analytics"', 'table = "t"', "[privacy]", 'mechanism = "none"']
    lines += ["[policy]", "allow_exact = true"]
    for i, p in enumerate(paths):
        lines += ["[[parties]]", f'name = "p{i}"', f"path = {json.dumps(str(p))}"]
    lines += ["[columns.smoker]", 'type = "boolean"', "[columns.visit]", 'type = "date"']
    if fmt is not None:
        lines.append(f"format = {json.dumps(fmt)}")
    lines += ["[columns.amount]", 'type = "number"', "lower = 0", "upper = 1000"]
    path = tmp / "typed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_declared_booleans_and_dates_filter_as_pandas_does(tmp_path: Path) -> None:
    frames = [party_frame(13), party_frame(14)]
    frames[0]["smoker"] = frames[0]["smoker"].map({"Yes": "yes", "No": "NO"})  # other spellings
    frames[1]["smoker"] = frames[1]["smoker"] == "Yes"  # a bool column: True/False, Parquet bool
    paths = [write(frames[0], tmp_path / "p0.csv", "pandas")]
    paths.append(write(frames[1], tmp_path / "p1.csv", "parquet"))
    pooled = pd.concat(frames, ignore_index=True)
    smoker = pooled["smoker"].map(lambda v: v is True or str(v).lower() == "yes")
    day = pd.to_datetime(pooled["visit"], format="%d/%m/%Y")

    job = _typed_job(tmp_path, paths, "%d/%m/%Y")
    res = run(job, "SELECT COUNT(*) AS n FROM t WHERE smoker = TRUE AND visit >= '2025-01-04'")
    assert res.exit_code == 0, res.output
    want = int((smoker & (day >= "2025-01-04")).sum())
    assert 0 < want < len(pooled)
    assert json.loads(res.stdout)["rows"][0]["answers"]["n"]["value"] == want

    res = run(job, "SELECT COUNT(*) AS n FROM t WHERE smoker = 'Yes'")
    assert res.exit_code == 2 and "compare it with TRUE or FALSE" in res.output
    sql = "SELECT COUNT(*) AS n FROM t WHERE visit >= '2025-01-04'"
    ambiguous = run(_typed_job(tmp_path, paths, None), sql)  # 03/01/2025: ambiguous, no format
    assert ambiguous.exit_code == 2
    for text in ("party 'p0'", "column 'visit'", "ambiguous", "%d/%m/%Y"):
        assert text in " ".join(ambiguous.output.split()), text
