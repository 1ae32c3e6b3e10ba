"""``ragkit query "text"``"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import WorkspaceOption, console, exit_with, print_json, warn_of
from ragkit.errors import DegradedSearchWarning, RagkitError
from ragkit.retrieval.limits import MAX_K, check_k, check_query_text

SNIPPET_CHARS = 240  # of a hit's text in the terminal table; piped output prints it all


def query_command(
    text: Annotated[str, typer.Argument(help="What to search for.")],
    workspace: WorkspaceOption = Path(".ragkit"),
    k: Annotated[int, typer.Option("-k", "--k", help=f"How many hits (1 to {MAX_K}).")] = 5,
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
    documents: Annotated[
        bool,
        typer.Option(
            "--documents",
            "-d",
            help="One hit per document (its best chunk), ranked by [query] documents.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON.")] = False,
) -> None:
    """Search the workspace and show the best-matching chunks.

    On a terminal the hits are a table that fits its width; piped or redirected, they are
    tab-separated lines (rank, score, document, section, text) with every text in full.
    """
    import ragkit

    try:
        check_query_text(text)  # the same checks, and words, as the Python API's
        check_k(k)
        kit = ragkit.open(workspace, create=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegradedSearchWarning)
            hits = kit.query(
                text,
                k=k,
                where=where,
                mode=mode,
                rerank=rerank,
                collection=collection,
                documents=documents,
            )
    except RagkitError as error:
        exit_with(error)
    warn_of(caught)
    if as_json:
        print_json([asdict(hit) for hit in hits])
    elif console.is_terminal:
        _print_table(text, hits)
    else:
        _print_plain(text, hits)


def _print_table(text: str, hits: list) -> None:  # type: ignore[type-arg]
    table = Table(title=f"{len(hits)} hits for {text!r}", header_style="bold", show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("document", overflow="fold", max_width=30)
    table.add_column("section", overflow="fold", max_width=28)
    table.add_column("text", overflow="fold", ratio=1)
    for hit in hits:
        snippet = " ".join(hit.text.split())
        table.add_row(
            str(hit.rank),
            f"{hit.score:.3f}",
            hit.uri,
            " > ".join(hit.headings) or hit.title,
            snippet[:SNIPPET_CHARS] + ("…" if len(snippet) > SNIPPET_CHARS else ""),
        )
    console.print(table)


def _print_plain(text: str, hits: list) -> None:  # type: ignore[type-arg]
    """One line per hit, tab-separated, nothing cut: for grep, cut and awk."""
    lines = [f"# {len(hits)} hits for {text!r}", "rank\tscore\tdocument\tsection\ttext"]
    for hit in hits:
        section = " > ".join(hit.headings) or hit.title
        fields = [str(hit.rank), f"{hit.score:.3f}", hit.uri, section, hit.text]
        lines.append("\t".join(" ".join(field.split()) for field in fields))
    sys.stdout.write("\n".join(lines) + "\n")
