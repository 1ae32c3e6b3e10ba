"""``ragkit eval``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import ProgressView, console, exit_with, print_json
from ragkit.errors import ConfigError, RagkitError
from ragkit.retrieval.grouping import DOCUMENT_SCORES


def eval_command(
    dataset: Annotated[
        Path | None,
        typer.Option(help="A BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."),
    ] = None,
    split: Annotated[str, typer.Option(help="Which qrels split to evaluate.")] = "dev",
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace to use. With --dataset: default .ragkit-eval/<dataset name>.",
        ),
    ] = None,
    qrels: Annotated[
        Path | None,
        typer.Option(help="Judgments for your own workspace (TSV: query-id corpus-id score)."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(help="Queries for your own workspace (jsonl with _id and text)."),
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option("--mode", "-m", help="Modes to run (default: all).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="A TREC run file to compare against, with a significance test."),
    ] = None,
    max_queries: Annotated[int | None, typer.Option(help="Evaluate only the first N.")] = None,
    collection: Annotated[
        str,
        typer.Option(help="The collection (or alias) to evaluate in your own workspace."),
    ] = "default",
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a self-contained HTML report to this file."),
    ] = None,
    documents: Annotated[
        str | None,
        typer.Option(
            help="chunks (default: rank chunk hits, a document scores its best chunk), or "
            "document hits scored by max or decayed."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Measure retrieval quality: nDCG@10, MRR@10, Recall@10/100 and MAP per mode.

    Either on a BEIR-format dataset (--dataset), or on your own workspace with --queries and
    --qrels. TREC run files are written next to the workspace for later comparison.
    """
    import ragkit
    from ragkit.evaluation import load_qrels, read_queries, read_trec_run
    from ragkit.pipelines.eval import EvalReport, eval_dataset, eval_workspace, write_eval_report

    try:
        if documents is not None and documents not in (*DOCUMENT_SCORES, "chunks"):
            raise ConfigError(
                f"--documents {documents!r} is unknown; use {', '.join(DOCUMENT_SCORES)} or chunks"
            )
        base = read_trec_run(baseline) if baseline else None
        with _progress(quiet=as_json) as on_progress:
            if dataset is not None:
                report = eval_dataset(
                    dataset,
                    split=split,
                    workspace=workspace,
                    modes=mode,
                    max_queries=max_queries,
                    baseline=base,
                    progress=on_progress,
                    documents=documents,
                )
            elif queries is not None and qrels is not None:
                root = workspace or Path(".ragkit")
                texts = read_queries(queries)
                judged = load_qrels(qrels)
                results = eval_workspace(
                    ragkit.open(root, create=False),
                    texts,
                    judged,
                    modes=mode,
                    baseline=base,
                    runs_dir=root / "runs",
                    progress=on_progress,
                    collection=collection,
                    documents=documents,
                )
                report = EvalReport(
                    dataset=str(queries),
                    split="-",
                    workspace=str(root),
                    queries=len(set(texts) & set(judged)),
                    results=results,
                    query_texts=texts,
                    qrels=judged,
                )
            else:
                raise ConfigError("give --dataset DIR, or --queries FILE and --qrels FILE")
        if report_path is not None:
            write_eval_report(report, report_path)
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
        return
    _render(report)
    if report_path is not None:
        console.print(f"report: {report_path}")


class _progress(ProgressView):
    def __init__(self, *, quiet: bool) -> None:
        super().__init__(quiet=quiet)
        self.tasks: dict[str, int] = {}

    def update(self, event: str, n: int) -> None:
        kind = "queries" if event.startswith("queries") else "files"
        if kind == "files" and event == "chunks":
            return
        if event.endswith("_total"):
            self.tasks[kind] = self.bar.add_task(kind, total=n)
        elif kind in self.tasks and event in ("file", "queries"):
            self.bar.advance(self.tasks[kind], n)


def _render(report) -> None:  # type: ignore[no-untyped-def]
    metrics = list(report.results[0].metrics) if report.results else []
    table = Table(
        title=f"{report.dataset} · {report.split} · {report.queries} queries", header_style="bold"
    )
    table.add_column("mode")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_column("queries/s", justify="right")
    for result in report.results:
        cells = []
        for name in metrics:
            cell = f"{100 * result.metrics[name]:.2f}"
            if name in result.comparison:
                c = result.comparison[name]
                mark = "*" if c.significant else ""
                cell += f" ({100 * c.delta:+.2f}{mark})"
            cells.append(cell)
        table.add_row(result.mode, *cells, f"{result.queries_per_second:.0f}")
    console.print(table)
    if any(r.comparison for r in report.results):
        console.print("(±Δ vs baseline, * = p < 0.05, paired randomization test)")
    for result in report.results:
        if result.run_path:
            console.print(f"run file: {result.run_path}")
