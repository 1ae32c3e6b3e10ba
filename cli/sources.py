"""``ragkit sources`` (list) and ``ragkit sources remove NAME``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli._common import WorkspaceOption, console, exit_with, print_json, print_table
from ragkit.errors import RagkitError

app = typer.Typer(
    name="sources",
    help="List the sources of a workspace, or remove one.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def sources_command(
    ctx: typer.Context,
    workspace: WorkspaceOption = Path(".ragkit"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the sources as JSON.")] = False,
) -> None:
    """List the sources: name, folder, include/exclude globs, files, documents, last ingest.

    A source is added by `ragkit ingest PATH` and keeps its globs until new ones are given.
    """
    if ctx.invoked_subcommand is not None:
        return
    import ragkit
    from ragkit.pipelines.sources import list_sources

    try:
        with ragkit.open(workspace, create=False) as kit:
            found = list_sources(kit)
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json([source.to_dict() for source in found])
        return
    if not found:
        console.print("no sources yet; add one with `ragkit ingest PATH`", highlight=False)
        return
    rows = [
        [
            source.name + ("" if source.configured else " (not in ragkit.toml)"),
            source.path,
            ", ".join(source.include),
            ", ".join(source.exclude) or "-",
            str(source.files),
            str(source.documents),
            _when(source.last_ingest, source.last_status),
        ]
        for source in found
    ]
    columns = ["name", "path", "include", "exclude", "files", "documents", "last ingest"]
    print_table("sources", columns, rows, right=("files", "documents"))


@app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="The source's name, as `ragkit sources` lists it.")],
    workspace: WorkspaceOption = Path(".ragkit"),
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another writer to finish.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Remove a source: it leaves ragkit.toml, and its documents leave the store and indexes
    in one commit. The files on disk are not touched.

    Exit codes: 0 removed, 1 error (e.g. no such source), 75 workspace locked.
    """
    import ragkit
    from ragkit.pipelines.sources import remove_source

    try:
        with ragkit.open(workspace, create=False) as kit:
            report = remove_source(kit, name, wait=wait)
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(
        f"removed source [cyan]{report.name}[/]: {report.files} files, {report.documents} "
        f"documents, {report.chunks} chunks · run {report.run_id}",
        highlight=False,
    )


def _when(finished: float | None, status: str | None) -> str:
    if finished is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(finished))
    return stamp if status == "ok" else f"{stamp} ({status})"
