"""``ragkit status``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli._common import WorkspaceOption, console, exit_with, print_json
from ragkit.cli.collections import print_collections, print_drift
from ragkit.errors import RagkitError


def status_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    as_json: Annotated[bool, typer.Option("--json", help="Print status as JSON.")] = False,
) -> None:
    """Show documents, chunks, collections, encoder and index sizes of a workspace."""
    import ragkit

    try:
        info = ragkit.open(workspace, create=False).status()
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(info)
        return
    counts = info["counts"]
    console.print(f"[bold]workspace[/] {info['workspace']}")
    console.print(
        f"{counts['documents']} documents · {counts['chunks']} chunks · {counts['files']} files "
        f"· {counts['embeddings']} cached embeddings"
    )
    for run in info["runs"]:  # the last one
        took = "" if run["seconds"] is None else f" in {run['seconds']:.1f}s"
        error = f": {run['error']}" if run["error"] else ""
        console.print(f"last run [cyan]{run['kind']}[/] {run['status']}{took}{error}")
    for name, root in info["sources"].items():
        console.print(f"source [cyan]{name}[/] → {root}", highlight=False)
    if info["sources"]:
        console.print("(`ragkit sources` lists them with their globs and counts)", highlight=False)
    print_collections(info["collections"])
    print_drift(info["collections"])
    for migration in info.get("migrations", []):
        serving = "; its query adapter serves" if migration["adapter_serving"] else ""
        console.print(
            f"migration #{migration['id']} of [cyan]{migration['alias']}[/] "
            f"{migration['state']}: {migration['source']} → {migration['target']}{serving} "
            "(`ragkit migrate status`)",
            highlight=False,
        )
