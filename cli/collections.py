"""``ragkit collections``"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli._common import WorkspaceOption, console, exit_with, print_json, print_table
from ragkit.errors import RagkitError


def collections_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the collections as JSON.")] = False,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Show where each alias pointed and when (newest first) instead."
        ),
    ] = False,
    alias: Annotated[
        str | None, typer.Option("--alias", help="With --history: only this alias.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="With --history: at most N.")] = 50,
) -> None:
    """List the collections: state, aliases, encoder, index, size, and any ragkit.toml drift;
    with --history, every alias move: when, alias, from → to, and why."""
    import ragkit

    try:
        kit = ragkit.open(workspace, create=False)
        if history:
            moves = kit.alias_history(alias, limit=limit)
        else:
            collections = kit.status()["collections"]
    except RagkitError as error:
        exit_with(error)
    if history:
        if as_json:
            print_json(moves)
        else:
            print_alias_history(moves)
        return
    if as_json:
        print_json(collections)
        return
    print_collections(collections)
    print_drift(collections)


def print_collections(collections: list[dict]) -> None:  # type: ignore[type-arg]
    rows = [
        [
            c["name"],
            c["state"],
            ",".join(c["aliases"]),
            f"{c['encoder']} ({c['fingerprint'][:10]})",
            str(c["dim"]),
            str(c["chunks"]),
            f"{c['backend']}/{c['index']}" + (" + documents" if c["document_vectors"] else ""),
            c["sparse"] or "-",
            str(c["generation"]),
            f"{c['index_bytes'] / 1e6:.1f} MB",
        ]
        for c in collections
    ]
    columns = [
        "name", "state", "alias", "encoder", "dim", "chunks", "index", "sparse", "generation",
        "size",
    ]  # fmt: skip
    print_table("collections", columns, rows, right=("dim", "chunks", "generation", "size"))


def print_drift(collections: list[dict]) -> None:  # type: ignore[type-arg]
    """ragkit.toml edits a live collection does not follow, field by field."""
    for c in collections:
        if not c["drift"]:
            continue
        console.print(
            f"[yellow]ragkit.toml differs from collection {c['name']}[/]:", highlight=False
        )
        for d in c["drift"]:
            console.print(
                f"  {d['field']}: {d['collection']!r} in the collection, "
                f"{d['ragkit.toml']!r} in ragkit.toml",
                highlight=False,
            )
        console.print(f"  {c['drift_hint']}", highlight=False)


def print_alias_history(moves: list[dict]) -> None:  # type: ignore[type-arg]
    if not moves:
        console.print("no alias has moved yet", highlight=False)
        return
    rows = [
        [
            dt.datetime.fromtimestamp(m["at"]).isoformat(" ", "seconds"),
            m["alias"],
            f"{m['from'] or '(new)'} → {m['to']}",
            m["reason"],
        ]
        for m in moves
    ]
    print_table("alias history", ["when", "alias", "from → to", "reason"], rows)
