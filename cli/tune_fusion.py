"""``ragkit tune-fusion``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import console, exit_with, print_json
from ragkit.errors import ConfigError, RagkitError


def tune_fusion_command(
    dataset: Annotated[
        Path | None, typer.Option(help="A BEIR-format folder whose split's queries to tune on.")
    ] = None,
    split: Annotated[str, typer.Option(help="The qrels split to tune on.")] = "dev",
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="Workspace (with --dataset: .ragkit-eval/<dataset name>)."
        ),
    ] = None,
    queries: Annotated[Path | None, typer.Option(help="Your queries (jsonl: _id, text).")] = None,
    qrels: Annotated[Path | None, typer.Option(help="Your judgments (TSV).")] = None,
    metric: Annotated[str, typer.Option(help="The metric to maximise.")] = "ndcg@10",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report only; do not write the config.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Search fusion method, RRF k and channel weights; write the best into ragkit.toml.

    Reports the gain over the current setting and a two-fold cross-validated score, which
    tells how much of the gain is real rather than picked to fit these queries.
    """
    import ragkit
    from ragkit.evaluation import load_beir, load_qrels, read_queries
    from ragkit.pipelines.tune_fusion import tune_fusion

    try:
        if dataset is not None:
            data = load_beir(dataset, split)
            texts, judged = data.queries, data.qrels
            root = workspace or Path(".ragkit-eval") / dataset.resolve().name
            kit = ragkit.open(root, create=True)
            kit.ingest(dataset / "corpus.jsonl")
        elif queries is not None and qrels is not None:
            texts, judged = read_queries(queries), load_qrels(qrels)
            kit = ragkit.open(workspace or Path(".ragkit"), create=False)
        else:
            raise ConfigError("give --dataset DIR, or --queries FILE and --qrels FILE")
        report = tune_fusion(kit, texts, judged, metric=metric, write=not dry_run)
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"fusion tuning · {report.queries} queries · {metric}", header_style="bold")
    table.add_column("setting")
    table.add_column(metric, justify="right")
    table.add_row("dense only", f"{100 * report.dense:.2f}")
    table.add_row("sparse only", f"{100 * report.sparse:.2f}")
    table.add_row("current fusion", f"{100 * report.current:.2f}")
    best = report.best
    label = f"best: {best.method} k={best.k} weights={list(best.weights)}"
    if best.method == "convex":
        label += f" {best.normalization}"
    table.add_row(label, f"{100 * best.score:.2f}")
    table.add_row("best, 2-fold cross-validated", f"{100 * report.cross_validated:.2f}")
    console.print(table)
    if report.written:
        console.print(f"written to {kit.config_path} [fusion]")
    elif not dry_run:
        console.print("the current setting is already the best; config unchanged")
