from __future__ import annotations

import base64
import copy
import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import fedsilo.report
from fedsilo.report import render_report, write_report
from tests.report.report_sample import make_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
EVIL = "<script>alert(1)</script>"


def _rename_party(metrics: dict[str, Any], old: str, new: str) -> None:
    def swap(d: dict[str, Any]) -> None:
        if old in d:
            d[new] = d.pop(old)

    swap(metrics["data"]["parties"])
    swap(metrics["final"]["parties"])
    for r in metrics["history"]:
        r["participants"] = [new if p == old else p for p in r["participants"]]
        swap(r["parties"])
        swap(r["failures"])


def _drop_metric(metrics: dict[str, Any], name: str) -> None:
    def drop(d: dict[str, Any]) -> None:
        d.pop(name, None)

    drop(metrics["final"]["global"])
    for m in metrics["final"]["parties"].values():
        drop(m)
    drop(metrics.get("baseline", {}))
    for r in metrics["history"]:
        drop(r["global"])
        for m in r["parties"].values():
            drop(m)


def _text(page: str) -> str:
    """The page without its embedded images (base64 can contain any short string)."""
    return IMG_RE.sub("data:image/png;base64,", page)


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b64, validate=True) for b64 in IMG_RE.findall(page)]


# --- content ---------------------------------------------------------------------------------


def test_contains_job_dataset_and_parties(metrics: dict[str, Any]) -> None:
    page = render_report(metrics)
    assert page.startswith("<!DOCTYPE html>")
    assert "mnist-3orgs" in page
    assert "mnist-5k" in page
    for party in ("org-a", "org-b", "org-c"):
        assert party in page
    assert "<title>mnist-3orgs" in page


def test_embeds_valid_png_images(metrics: dict[str, Any]) -> None:
    page = render_report(metrics)
    images = _pngs(page)
    # convergence, per-party bars, label distribution
    assert len(images) == 3
    for png in images:
        assert png.startswith(PNG_MAGIC)
        assert len(png) > 2_000


def test_no_external_resources(metrics: dict[str, Any]) -> None:
    page = render_report(metrics)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    srcs = re.findall(r"""src=['"]([^'"]*)['"]""", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_headline_and_baseline_ratio(metrics: dict[str, Any]) -> None:
    page = render_report(metrics)
    final_acc = metrics["final"]["global"]["accuracy"]
    base_acc = metrics["baseline"]["accuracy"]
    assert f"{final_acc:.4f}" in page
    assert f"{metrics['final']['global']['auc']:.4f}" in page
    assert f"{final_acc / base_acc:.3f}×" in page
    assert "Federated vs centralized" in page
    assert "Centralized baseline" in page


def test_tables_and_formatting(metrics: dict[str, Any]) -> None:
    metrics["data"]["parties"]["org-a"]["train_examples"] = 1234567
    page = render_report(metrics)
    assert "1,234,567" in page  # thousands separators for counts
    assert "12.3 s" in page  # wall time
    # per-round table: one row per round, 4-decimal metrics
    for r in metrics["history"]:
        assert f"{r['global']['loss']:.4f}" in page
    assert "Global metrics per round" in page
    # failures table lists the round, the party and the reason
    assert "timed out after 30 s" in page
    assert "(1 failed)" in page
    assert "2 / 3" in page


def test_config_pretty_printed_and_escaped(metrics: dict[str, Any]) -> None:
    metrics["job"]["config"]["model"]["note"] = 'a < b & "c"'
    page = render_report(metrics)
    pre = re.search(r"<pre>(.*?)</pre>", page, re.S)
    assert pre is not None
    assert html.unescape(pre.group(1)) == json.dumps(
        metrics["job"]["config"], indent=2, ensure_ascii=False
    )
    assert r"a &lt; b &amp; \&quot;c\&quot;" in pre.group(1)


# --- escaping --------------------------------------------------------------------------------


def test_escapes_malicious_strings(metrics: dict[str, Any]) -> None:
    _rename_party(metrics, "org-b", EVIL)
    metrics["job"]["name"] = "job\"'><img src=x onerror=alert(1)>"
    metrics["job"]["config"]["name"] = EVIL
    metrics["data"]["dataset"] = EVIL
    metrics["history"][3]["failures"]["org-c"] = f"boom {EVIL}"
    counts = metrics["data"]["parties"]["org-a"]["label_counts"]
    counts[EVIL] = counts.pop("0")
    page = render_report(metrics)
    assert "<script" not in page.lower()
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "job&quot;&#x27;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert len(_pngs(page)) == 3


def test_dollar_signs_in_names_do_not_break_plots(metrics: dict[str, Any]) -> None:
    _rename_party(metrics, "org-a", "acme $corp")
    _rename_party(metrics, "org-b", r"$\frac{bad$ ^{")
    page = render_report(metrics)
    assert "acme $corp" in page
    assert len(_pngs(page)) == 3


# --- coping with partial input ---------------------------------------------------------------


def test_without_baseline(metrics: dict[str, Any]) -> None:
    del metrics["baseline"]
    page = render_report(metrics)
    assert "No centralized baseline" in page
    assert "Centralized baseline" not in page
    assert "×" not in _text(page)
    assert len(_pngs(page)) == 3


def test_without_auc(metrics: dict[str, Any]) -> None:
    _drop_metric(metrics, "auc")
    page = render_report(metrics)
    assert "AUC" not in _text(page)
    assert "Final global accuracy" in page
    assert len(_pngs(page)) == 3


def test_auc_null_everywhere_counts_as_absent(metrics: dict[str, Any]) -> None:
    # metrics.json stores NaN (e.g. AUC of a multiclass job) as null
    for scope in [
        metrics["final"]["global"],
        metrics["baseline"],
        *metrics["final"]["parties"].values(),
    ]:
        scope["auc"] = None
    for r in metrics["history"]:
        for scope in [r["global"], *r["parties"].values()]:
            scope["auc"] = None
    page = render_report(metrics)
    assert "AUC" not in _text(page)


def test_nan_and_null_values_show_as_missing(metrics: dict[str, Any]) -> None:
    metrics["final"]["global"]["loss"] = float("nan")
    metrics["final"]["parties"]["org-a"]["f1"] = None
    metrics["history"][0]["global"]["loss"] = float("inf")
    page = render_report(metrics)
    assert "—" in page
    assert "nan" not in _text(page).lower()
    assert "inf" not in _text(page).lower()
    assert len(_pngs(page)) == 3


def test_party_absent_from_a_round_and_from_final(metrics: dict[str, Any]) -> None:
    # org-c failed in round 4 (fixture); here it also drops out before the end
    for r in metrics["history"][-2:]:
        r["participants"].remove("org-c")
        del r["parties"]["org-c"]
    del metrics["final"]["parties"]["org-c"]
    page = render_report(metrics)
    assert "org-c" in page
    assert "(no final metrics)" in page
    assert len(_pngs(page)) == 3


def test_party_known_only_from_results(metrics: dict[str, Any]) -> None:
    metrics["data"]["parties"].pop("org-c")
    page = render_report(metrics)
    assert "org-c" in page


def test_final_missing_uses_last_round(metrics: dict[str, Any]) -> None:
    del metrics["final"]
    page = render_report(metrics)
    assert "last round" in page
    assert f"{metrics['history'][-1]['global']['accuracy']:.4f}" in page


def test_single_round(metrics: dict[str, Any]) -> None:
    metrics["history"] = metrics["history"][:1]
    page = render_report(metrics)
    assert "1 of 10" in page
    assert len(_pngs(page)) == 3


def test_many_parties_and_classes() -> None:
    metrics = make_metrics(rounds=3)
    parties = [f"hospital-{i:02d}" for i in range(25)]
    classes = [f"c{i}" for i in range(30)]
    metrics["data"]["classes"] = classes
    metrics["data"]["parties"] = {
        p: {
            "train_examples": 100 + i,
            "holdout_examples": 25,
            "label_counts": {c: (i * 7 + j) % 11 for j, c in enumerate(classes)},
        }
        for i, p in enumerate(parties)
    }
    for r in [*metrics["history"], metrics["final"]]:
        template = r["parties"]["org-a"]
        r["parties"] = {p: dict(template) for p in parties}
    for r in metrics["history"]:
        r["participants"] = parties
        r["failures"] = {}
    page = render_report(metrics)
    assert "hospital-24" in page
    assert len(_pngs(page)) == 3


def test_empty_and_odd_input() -> None:
    for metrics in ({}, {"history": []}, {"job": None, "data": "x", "history": [None, 3]}):
        page = render_report(metrics)
        assert "<html" in page
        assert "fedsilo job" in page


def test_pure_and_deterministic(metrics: dict[str, Any]) -> None:
    before = copy.deepcopy(metrics)
    first = render_report(metrics)
    assert metrics == before
    assert render_report(metrics) == first


# --- files and imports -----------------------------------------------------------------------


def test_write_report(metrics: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "out" / "nested" / "report.html"
    written = write_report(metrics, target)
    assert written == target
    assert target.read_text(encoding="utf-8") == render_report(metrics)


def test_does_not_use_pyplot() -> None:
    src = Path(fedsilo.report.__file__).parents[2]
    code = (
        "import sys, matplotlib\n"
        "before = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from fedsilo.report import render_report\n"
        "page = render_report({'history': [{'round': 1, 'global': {'loss': 1.0, 'accuracy': .5}}]})\n"
        "assert 'data:image/png;base64,' in page\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == before, 'backend changed'\n"
    )
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "MPLBACKEND": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
