"""The HTML report: numbers computed from the rankings, won/lost queries, no external assets,
and the page rendered by headless Chromium (skipped without it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ragkit.evaluation.report import ReportRun, recall_curve, render_report, write_report
from tests.test_training_pipeline import synthetic  # noqa: F401  (a fixture)

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d4": 1}}
QUERIES = {"q1": "restore <zfs> snapshot", "q2": "git rebase", "q3": "dns"}


def runs() -> list[ReportRun]:
    before = ReportRun(
        "before",
        "dense",
        {"ndcg@10": 0.40, "recall@100": 0.5},
        per_query={"q1": {"ndcg@10": 0.2}, "q2": {"ndcg@10": 0.9}, "q3": {"ndcg@10": 0.1}},
        rankings={"q1": ["d9", "d1"], "q2": ["d2", "d3"], "q3": ["d8"]},
    )
    after = ReportRun(
        "after",
        "dense",
        {"ndcg@10": 0.65, "recall@100": 0.9},
        per_query={"q1": {"ndcg@10": 1.0}, "q2": {"ndcg@10": 0.5}, "q3": {"ndcg@10": 0.1}},
        rankings={"q1": ["d1"], "q2": ["d7", "d2", "d3"], "q3": ["d4"]},
    )
    return [before, after]


def test_recall_curve_is_computed_from_the_rankings() -> None:
    curve = dict(recall_curve(runs()[1].rankings, QRELS, ks=(1, 2, 3)))
    # q1 finds d1 at 1; q2 finds d2 at 2 and d3 at 3; q3 finds d4 at 1
    assert curve == pytest.approx({1: (1 + 0 + 1) / 3, 2: (1 + 0.5 + 1) / 3, 3: 1.0})
    assert dict(recall_curve({}, QRELS, ks=(5,))) == {5: 0.0}


def test_page_shows_bars_movers_and_hits_and_is_self_contained() -> None:
    page = render_report("t <1>", runs(), queries=QUERIES, qrels=QRELS, subtitle="s")
    dom = HTMLParser(page)
    bars = {
        (b.attributes["data-label"], b.attributes["data-metric"]): float(b.attributes["data-value"])
        for b in dom.css("rect.bar")
    }
    assert bars == {
        ("before", "ndcg@10"): 0.40,
        ("before", "recall@100"): 0.5,
        ("after", "ndcg@10"): 0.65,
        ("after", "recall@100"): 0.9,
    }
    assert {c.attributes["data-label"] for c in dom.css("polyline.curve")} == {"before", "after"}
    won = [r.attributes["data-qid"] for r in dom.css("table.won tr.query")]
    lost = [r.attributes["data-qid"] for r in dom.css("table.lost tr.query")]
    assert won == ["q1"] and lost == ["q2"]  # q3 did not move
    row = dom.css_first('table.won tr[data-qid="q1"]')
    assert "restore <zfs> snapshot" in row.text() and "+80.0" in row.text()
    assert [li.text() for li in row.css("li.relevant")] == ["d1", "d1"]  # before and after
    assert "<zfs>" not in page and "t &lt;1&gt;" in page  # escaped
    assert not re.search(r"<script|<link|\bsrc=|url\(", page)


def test_a_single_run_lists_the_hardest_queries(tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "sub" / "r.html", "one", runs()[1:], queries=QUERIES, qrels=QRELS
    )
    dom = HTMLParser(path.read_text())
    assert [r.attributes["data-qid"] for r in dom.css("table.hardest tr.query")] == [
        "q3",
        "q2",
        "q1",
    ]


def test_eval_report_of_a_dataset(synthetic: Path, tmp_path: Path, tiny_encoder) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    from ragkit.pipelines.eval import eval_dataset, write_eval_report

    report = eval_dataset(synthetic, split="dev", workspace=tmp_path / "ws", encoder=tiny_encoder)
    path = write_eval_report(report, tmp_path / "eval.html")
    dom = HTMLParser(path.read_text())
    modes = {s.attributes["data-mode"] for s in dom.css("section.mode")}
    assert modes == {r.mode for r in report.results} and "dense" in modes
    dense = next(r for r in report.results if r.mode == "dense")
    shown = {
        b.attributes["data-metric"]: float(b.attributes["data-value"])
        for b in dom.css('section[data-mode="dense"] rect.bar')
    }
    assert shown == pytest.approx({k: round(v, 4) for k, v in dense.metrics.items()}, abs=1e-4)
    assert len(dom.css('table.hardest[data-mode="dense"] tr.query')) == 5


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH; the page is not rendered")
def test_chromium_renders_the_page(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.html", "render", runs(), queries=QUERIES, qrels=QRELS)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    base += ["--window-size=1000,1400", "--hide-scrollbars"]
    dom = subprocess.run(
        [*base, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    parsed = HTMLParser(dom)
    assert len(parsed.css("rect.bar")) == 4 and parsed.css_first("table.won") is not None
    shot = tmp_path / "r.png"
    subprocess.run([*base, f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
