"""``ragkit query "text"``"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import WorkspaceOption, console, exit_with, print_json, warn_of
from ragkit.errors import DegradedSearchWarning, RagkitError


def query_command(
    text: Annotated[str, typer.Argument(help="What to search for.")],
    workspace: WorkspaceOption = Path(".ragkit"),
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many hits.")] = 5,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Metadata filter KEY OP VALUE, e.g. source=docs, format=pdf."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            "-m",
            help="dense, sparse or hybrid (default: hybrid when a sparse channel exists).",
        ),
    ] = None,
    rerank: Annotated[
        str | None,
        typer.Option(help="Re-rank the top hits with this cross-encoder (name or path)."),
    ] = None,
    collection: Annotated[
        str,
        typer.Option(
            "--collection",
            "-c",
            help="The collection (or alias) to search; its own encoder is used.",
        ),
    ] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON.")] = False,
) -> None:
    """Search the workspace and show the best-matching chunks."""
    import ragkit

    try:
        kit = ragkit.open(workspace, create=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegradedSearchWarning)
            hits = kit.query(
                text, k=k, where=where, mode=mode, rerank=rerank, collection=collection
            )
    except RagkitError as error:
        exit_with(error)
    warn_of(caught)
    if as_json:
        print_json([asdict(hit) for hit in hits])
        return
    table = Table(title=f"{len(hits)} hits for {text!r}", header_style="bold", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("document", overflow="fold", max_width=30)
    table.add_column("section", overflow="fold", max_width=28)
    table.add_column("text", overflow="fold")
    for hit in hits:
        snippet = " ".join(hit.text.split())
        table.add_row(
            str(hit.rank),
            f"{hit.score:.3f}",
            hit.uri,
            " > ".join(hit.headings) or hit.title,
            snippet[:240] + ("…" if len(snippet) > 240 else ""),
        )
    console.print(table)
