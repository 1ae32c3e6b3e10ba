"""``ragkit reindex``: the command a schedule runs (see ``ragkit schedule``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import (
    EXIT_ERROR,
    EXIT_PARTIAL,
    WorkspaceOption,
    console,
    err_console,
    exit_with,
    print_json,
)
from ragkit.errors import RagkitError


def reindex_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    wait: Annotated[
        float,
        typer.Option(help="Seconds to wait for a running job to finish (then exit 75)."),
    ] = 0.0,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Let a source folder that is now empty delete all its files from the index.",
        ),
    ] = False,
    max_delete_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Refuse to delete more than this share of a source's files in one run.",
        ),
    ] = None,
    commit_every: Annotated[int, typer.Option(min=1, help="Chunks per atomic commit.")] = 4096,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Encode on a Ray cluster: auto, ray://host:port, or local (pip install "
            "'ragkit[ray]'; see docs/scale.md).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-ingest every configured source (new, changed, deleted files), check the workspace,
    and update its collections, under one writer lock.

    Exit codes: 0 done, 3 some files failed (their last good version is kept), 1 error (a
    source missing or suddenly empty, a failed check, a write error), 75 workspace locked.
    """
    import ragkit
    from ragkit.pipelines.reindex import ReindexError, reindex

    try:
        kit = ragkit.open(workspace, create=False)
        report = reindex(
            kit,
            wait=wait,
            allow_empty=allow_empty,
            max_delete_fraction=max_delete_fraction,
            commit_every=commit_every,
            ray=ray,
        )
    except ReindexError as error:
        if as_json and error.report is not None:
            print_json({**error.report.to_dict(), "ok": False, "error": str(error)})
        exit_with(error)
    except RagkitError as error:
        exit_with(error)
    except (OSError, sqlite3.Error) as error:
        # A full disk, a read-only mount: the commit never happened, so the previous
        # generation is still the one readers see.
        err_console.print(
            f"[bold red]error:[/] cannot write to the workspace {workspace} ({error}); "
            "nothing was committed, the previous index generation is still served. Free "
            "space or fix the mount, then run again.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


def _render(report) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"reindex · run {report.run_id}", header_style="bold")
    table.add_column("source", overflow="fold")
    for column in ("added", "updated", "deleted", "unchanged", "failed"):
        table.add_column(column, justify="right")
    for s in report.sources:
        table.add_row(
            s.name, str(s.added), str(s.updated), str(s.deleted), str(s.unchanged), str(s.failed)
        )
    console.print(table)
    generations = ", ".join(f"{name} g{g}" for name, g in report.generations.items())
    console.print(
        f"{report.encoder_calls} chunks embedded · {report.commits} commits · {generations} · "
        f"check {'ok' if report.doctor_ok else 'FAILED'}"
    )
    for failure in report.ingest.get("failures", []):
        console.print(f"[red]failed:[/] {failure['path']}: {failure['reason']}", highlight=False)
