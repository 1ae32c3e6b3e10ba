"""Evaluate a workspace on queries with relevance judgments, mode by mode.

``eval_dataset`` builds (or reuses) a workspace for a BEIR-format dataset and ingests its corpus
incrementally, so a second run only re-runs the queries. Qrels judge documents; by default
(``documents="chunks"``) chunk hits are ranked and a document scores as its best chunk, which
measured as well as or better than document hits on every set in BENCHMARKS.md ("Long
documents"). ``documents="max"`` or ``"decayed"`` asks for document hits with that scoring
(each channel grouped into documents before fusion), ``True`` for ``[query] documents``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.encoders.protocol import Encoder
from ragkit.evaluation import (
    DEFAULT_METRICS,
    Comparison,
    EvalResult,
    compare,
    corpus_id_from_uri,
    evaluate,
    hits_to_run,
    load_beir,
    write_trec_run,
)
from ragkit.workspace import Workspace, open_workspace

__all__ = ["EvalReport", "ModeResult", "eval_dataset", "eval_workspace", "write_eval_report"]

ProgressCallback = Callable[[str, int], None]


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries_per_second: float
    run_path: str | None = None
    comparison: dict[str, Comparison] = field(default_factory=dict)
    rankings: dict[str, list[str]] = field(default_factory=dict, repr=False)  # for --report

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "metrics": self.metrics,
            "queries_per_second": self.queries_per_second,
            "run_path": self.run_path,
            "comparison": {m: vars(c) for m, c in self.comparison.items()},
        }


@dataclass
class EvalReport:
    dataset: str
    split: str
    workspace: str
    queries: int
    results: list[ModeResult]
    ingest: dict[str, Any] | None = None
    # what --report needs to show the queries and mark relevant hits; not part of the JSON
    query_texts: dict[str, str] = field(default_factory=dict, repr=False)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "workspace": self.workspace,
            "queries": self.queries,
            "results": [r.to_dict() for r in self.results],
            "ingest": self.ingest,
        }


def eval_dataset(
    dataset: str | Path,
    *,
    split: str = "dev",
    workspace: str | Path | None = None,
    modes: Sequence[str] | None = None,
    encoder: Encoder | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int = 100,
    max_queries: int | None = None,
    runs_dir: str | Path | None = None,
    baseline: dict[str, dict[str, float]] | None = None,
    progress: ProgressCallback | None = None,
    documents: bool | str | None = None,
) -> EvalReport:
    """Ingest ``dataset/corpus.jsonl`` into a workspace (incrementally) and evaluate it."""
    dataset = Path(dataset)
    data = load_beir(dataset, split)
    root = Path(workspace) if workspace else Path(".ragkit-eval") / dataset.resolve().name
    kit = open_workspace(root, create=True, encoder=encoder)
    try:
        ingest = kit.ingest(dataset / "corpus.jsonl", progress=progress)
        queries = dict(sorted(data.queries.items()))
        if max_queries:
            queries = dict(list(queries.items())[:max_queries])
        results = eval_workspace(
            kit,
            queries,
            data.qrels,
            modes=modes,
            metrics=metrics,
            depth=depth,
            runs_dir=Path(runs_dir) if runs_dir else root / "runs",
            run_tag=f"{dataset.name}-{split}",
            baseline=baseline,
            progress=progress,
            documents=documents,
        )
        return EvalReport(
            dataset=str(dataset),
            split=split,
            workspace=str(root),
            queries=len(queries),
            results=results,
            ingest=ingest.to_dict(),
            query_texts=queries,
            qrels=data.qrels,
        )
    finally:
        kit.close()


def eval_workspace(
    kit: Workspace,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    modes: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int = 100,
    runs_dir: Path | None = None,
    run_tag: str = "ragkit",
    baseline: dict[str, dict[str, float]] | None = None,
    progress: ProgressCallback | None = None,
    batch_size: int = 256,
    collection: str = "default",
    documents: bool | str | None = None,
) -> list[ModeResult]:
    """Run every mode over the queries on ``collection`` (a collection or alias name);
    optionally compare each to a baseline run. ``documents``: see the module's docstring."""
    notify = progress or (lambda event, n: None)
    qids = [q for q in queries if q in qrels]
    texts = [queries[q] for q in qids]
    baseline_result = evaluate(baseline, qrels, metrics) if baseline is not None else None
    results = []
    for mode in modes or kit.available_modes(collection):
        notify("queries_total", len(qids))
        started = time.perf_counter()
        hits_per_query: dict[str, list[Any]] = {}
        for start in range(0, len(qids), batch_size):
            part = qids[start : start + batch_size]
            batch = texts[start : start + batch_size]
            if documents in (None, "chunks"):
                # Several chunks of one document may rank high; fetch more chunks than documents.
                hits = kit.query_many(batch, k=depth * 3, mode=mode, collection=collection)
            else:
                hits = kit.query_many(
                    batch, k=depth, mode=mode, collection=collection, documents=documents
                )
            hits_per_query.update(zip(part, hits, strict=True))
            notify("queries", len(part))
        elapsed = time.perf_counter() - started
        run = hits_to_run(hits_per_query, doc_key=lambda hit: corpus_id_from_uri(hit.uri))
        run = {
            q: dict(sorted(docs.items(), key=lambda x: -x[1])[:depth]) for q, docs in run.items()
        }
        result = evaluate(run, qrels, metrics)
        run_path = None
        if runs_dir is not None:
            runs_dir.mkdir(parents=True, exist_ok=True)
            run_path = str(
                write_trec_run(run, runs_dir / f"{run_tag}-{mode}.trec", f"ragkit-{mode}")
            )
        mode_result = ModeResult(
            mode=mode,
            metrics=result.mean,
            per_query=result.per_query,
            queries_per_second=len(qids) / elapsed if elapsed else float("inf"),
            run_path=run_path,
            rankings={q: list(docs) for q, docs in run.items()},
        )
        if baseline_result is not None:
            mode_result.comparison = _compare(baseline_result, result)
        results.append(mode_result)
    return results


def write_eval_report(report: EvalReport, path: str | Path) -> Path:
    """``ragkit eval --report``: the HTML page of :mod:`ragkit.evaluation.report`."""
    from ragkit.evaluation.report import ReportRun, write_report

    runs = [
        ReportRun("run", r.mode, r.metrics, per_query=r.per_query, rankings=r.rankings)
        for r in report.results
    ]
    return write_report(
        path,
        f"ragkit eval · {Path(report.dataset).name}",
        runs,
        queries=report.query_texts,
        qrels=report.qrels,
        subtitle=f"{report.dataset} · split {report.split} · {report.queries} queries · "
        f"workspace {report.workspace}",
    )


def _compare(baseline: EvalResult, result: EvalResult) -> dict[str, Comparison]:
    """Paired randomization test per metric: no normality assumption on per-query scores."""
    out = {}
    for name in result.mean:
        a, b = baseline.metric(name), result.metric(name)
        if len(set(a) & set(b)) >= 2:
            out[name] = compare(a, b, test="randomization")
    return out
