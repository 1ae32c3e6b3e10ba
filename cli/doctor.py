"""``ragkit doctor [--repair]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import (
    EXIT_ERROR,
    ProgressView,
    WorkspaceOption,
    console,
    exit_with,
    print_json,
)
from ragkit.errors import RagkitError, StoreDamagedError

_STYLE = {
    "ok": "[green]ok[/]",
    "problem": "[bold red]problem[/]",
    "skipped": "[dim]skipped[/]",
    "drift": "[yellow]drift[/]",
}


def doctor_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild broken or mismatched indexes from the store (takes the writer lock), "
            "remove stray generation files, then check again.",
        ),
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(help="Run SQLite's quick_check instead of the full integrity_check."),
    ] = False,
    wait: Annotated[
        float, typer.Option(help="With --repair: seconds to wait for another writer to finish.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check that every collection's index files agree with the store, the record of truth.

    Per collection: the committed dense index exists, loads and holds exactly the store's chunk
    ids; every chunk has a cached vector for the collection's encoder; the sparse index exists,
    loads and holds the same ids; no files of other generations are left over; on a Qdrant
    server or shared folder, the Qdrant aliases follow the store's and, with qdrant_sparse, the
    points' sparse vectors match the sparse index. For the store:
    SQLite's integrity check and foreign keys. Without --repair nothing is written.

    Exit codes: 0 healthy, 1 problems found (after --repair: problems left) or error,
    75 workspace locked (--repair only).
    """
    import ragkit

    try:
        with ragkit.open(workspace, create=False) as kit, _progress(quiet=as_json) as on_progress:
            report = kit.doctor(repair=repair, quick=quick, wait=wait, progress=on_progress)
    except StoreDamagedError as error:
        if as_json:  # too damaged to open: still a report of the same shape
            from ragkit.doctor import STORE_INTEGRITY, Check, DoctorReport

            check = Check(STORE_INTEGRITY, "problem", str(error))
            print_json(DoctorReport(str(workspace), [check], []).to_dict())
            raise typer.Exit(EXIT_ERROR) from error
        exit_with(error)
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report, repair)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


class _progress(ProgressView):
    """Chunks encoded during a repair (dense vectors the cache lacked, SPLADE vectors)."""

    def __init__(self, *, quiet: bool) -> None:
        super().__init__(quiet=quiet)
        self.task = self.bar.add_task("encoding", total=None, visible=False)

    def update(self, event: str, n: int) -> None:
        if event in ("chunks", "sparse_chunks"):
            self.bar.update(self.task, visible=True)
            self.bar.advance(self.task, n)


def _render(report, repair: bool) -> None:  # type: ignore[no-untyped-def]
    console.print(_table(f"workspace {report.workspace}", report.store))
    for c in report.collections:
        aliases = f"alias {', '.join(c.aliases)} · " if c.aliases else "no alias · "
        title = f"{c.name} ({c.state} · {aliases}generation {c.generation})"
        console.print(_table(title, c.checks))
    for action in report.repaired:
        console.print(f"[bold]repaired:[/] {action}", highlight=False)
    if report.ok:
        console.print("[green]healthy[/]")
    elif repair:
        console.print("[bold red]problems remain after the repair[/]")
    else:
        console.print("[bold red]problems found[/]: run `ragkit doctor --repair`", highlight=False)


def _table(title: str, checks) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, _STYLE.get(check.status, check.status), check.detail)
    return table
