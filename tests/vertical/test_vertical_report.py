"""The vertical job's HTML report: self-contained, with the numbers of the document."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from fedsilo.vertical.report import render_report as render_doc

PNG = "data:image/png;base64,"


def _lr_doc() -> dict[str, Any]:
    return {
        "job": "bank_x_retailer",
        "kind": "vertical",
        "algorithm": "hetero_lr",
        "he_scheme": "ckks",
        "guest": "bank",
        "hosts": ["retailer"],
        "alignment": {
            "aligned": 24_517,
            "train": 19_613,
            "test": 4_904,
            "local_rows": {"bank": 30_000, "retailer": 27_311},
        },
        "test": {"auc": 0.7213, "ks": 0.3871, "accuracy": 0.8102, "f1": 0.3555},
        "train": {"auc": 0.7302, "ks": 0.3944, "accuracy": 0.8127, "f1": 0.3612},
        "baseline": {"auc": 0.7251, "ks": 0.3902, "accuracy": 0.8111, "f1": 0.3587},
        "loss_per_epoch": [0.6931, 0.5512, 0.4987, 0.4811],
        "seconds_per_epoch": [12.5, 12.1, 12.3, 11.9],
        "wall_time_s": 61.2,
    }


def _sb_doc() -> dict[str, Any]:
    return {
        "job": "credit_trees",
        "kind": "vertical",
        "algorithm": "secureboost",
        "he_scheme": "paillier",
        "alignment": {
            "aligned": 569,
            "train": 455,
            "test": 114,
            "local_rows": {"hospital": 569, "lab": 600},
        },
        "test": {"auc": 0.9871, "ks": 0.9123, "accuracy": 0.9561, "f1": 0.9650},
        "baseline": {"auc": 0.9866, "ks": 0.9101, "accuracy": 0.9474, "f1": 0.9583},
        "train_loss_per_tree": [0.51, 0.38, 0.29],
        "valid_loss_per_tree": [0.53, 0.41, 0.33],
        "seconds_per_tree": [1.42, 1.39, 1.45],
    }


def render_report(flat: dict[str, Any]) -> str:
    """Render a flat description (the keys above) as the metrics.json document it stands for."""
    unit, keys = (
        ("tree", ("train_loss_per_tree", "valid_loss_per_tree", "seconds_per_tree"))
        if flat.get("algorithm") == "secureboost"
        else ("epoch", ("loss_per_epoch", None, "seconds_per_epoch"))
    )
    names = ("taylor_loss" if unit == "epoch" else "train_loss", "valid_loss", "duration_s")
    series = {n: flat.get(k, []) if k else [] for n, k in zip(names, keys, strict=True)}
    steps = max((len(v) for v in series.values()), default=0)
    history = [
        {unit: i + 1, **{n: v[i] for n, v in series.items() if i < len(v)}} for i in range(steps)
    ]
    section = ("algorithm", "he_scheme", "guest", "hosts", "alignment", "train")
    doc: dict[str, Any] = {
        "vertical": {k: flat[k] for k in section if k in flat},
        "history": history,
    }
    if "job" in flat:
        doc["job"] = {"name": flat["job"], "kind": flat.get("kind")}
    if "test" in flat:
        doc["final"] = {"global": flat["test"], "parties": {}}
    for key in ("baseline", "wall_time_s"):
        if key in flat:
            doc[key] = flat[key]
    return render_doc(doc)


def _images(page: str) -> list[bytes]:
    uris = re.findall(r"src='(data:image/png;base64,[A-Za-z0-9+/=]+)'", page)
    return [base64.b64decode(u[len(PNG) :]) for u in uris]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    parser = _Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base"}
    for _, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith(PNG), (key, value)
    assert "default-src 'none'" in page  # the CSP blocks any fetch the markup might still make


def test_hetero_lr_report_has_inline_plots_and_the_numbers() -> None:
    page = render_report(_lr_doc())
    _assert_self_contained(page)
    images = _images(page)
    assert len(images) == 2  # loss/seconds per epoch, metrics bars
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and len(img) > 5_000 for img in images)
    for text in ("bank_x_retailer", "hetero logistic regression", "CKKS", "bank", "retailer"):
        assert text in page
    for number in ("24,517", "19,613", "4,904", "30,000", "27,311"):
        assert number in page
    for number in ("0.7213", "0.3871", "0.8102", "0.3555", "0.7302", "0.7251", "0.3587"):
        assert number in page
    assert "guest (labels)" in page and "its weights and the intercept" in page
    assert "4 epochs, 48.8 s in all" in page  # seconds-per-epoch summary


def test_secureboost_report_has_inline_plots_and_the_numbers() -> None:
    page = render_report(_sb_doc())
    _assert_self_contained(page)
    assert len(_images(page)) == 2
    for text in ("credit_trees", "SecureBoost", "Paillier", "hospital", "lab"):
        assert text in page
    for number in ("569", "455", "114", "600", "0.9871", "0.9123", "0.9561", "0.9650", "0.9866"):
        assert number in page
    assert "3 trees, 4.3 s in all" in page
    assert "split table" in page  # what a party keeps of a SecureBoost model
    assert "private set intersection" in page  # alignment method defaults to PSI
    doc = _sb_doc()
    doc["alignment"]["method"] = "join on <id>"
    page = render_report(doc)
    assert "Rows aligned by: join on &lt;id&gt;." in page
    assert "private set intersection" not in page


def test_report_differs_with_the_data() -> None:
    doc = _sb_doc()
    other = {**doc, "test": {**doc["test"], "auc": 0.5}}
    bars, curves = _images(render_report(doc))  # results section first, then training
    bars2, curves2 = _images(render_report(other))
    assert bars != bars2 and curves == curves2


@pytest.mark.parametrize(
    "drop",
    [
        ("train", "baseline"),
        ("loss_per_epoch", "seconds_per_epoch"),
        ("alignment", "guest", "hosts"),
        ("test", "train", "baseline", "loss_per_epoch", "seconds_per_epoch", "he_scheme", "job"),
    ],
)
def test_optional_keys_may_be_absent(drop: tuple[str, ...]) -> None:
    doc = {k: v for k, v in _lr_doc().items() if k not in drop}
    page = render_report(doc)
    _assert_self_contained(page)
    if "baseline" in drop:
        assert "No centralized baseline" in page or "No metrics recorded" in page
    if "loss_per_epoch" in drop:
        assert "No per-epoch loss or timing recorded." in page
    if "alignment" in drop:
        assert "No per-party row counts recorded." in page


def test_names_from_the_document_are_escaped() -> None:
    doc = _lr_doc()
    doc["job"] = "<img src=http://evil.example/x.png>"
    doc["alignment"]["local_rows"] = {"<b>bank</b>": 10}
    page = render_report(doc)
    _assert_self_contained(page)
    assert "&lt;img src=http://evil.example/x.png&gt;" in page
    assert "&lt;b&gt;bank&lt;/b&gt;" in page
