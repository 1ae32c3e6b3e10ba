"""``ragkit runs`` and ``ragkit runs show ID``: what each job did, from the runs table."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragkit.cli._common import WorkspaceOption, console, err_console, exit_with, print_json
from ragkit.errors import RagkitError

app = typer.Typer(
    help="Run history: every ingest, reindex, repair... with its counts and status.",
    invoke_without_command=True,
    no_args_is_help=False,
)

#: (column, keys in a run's stats that hold it: ingest's names, then reindex's)
COUNTS = (
    ("added", ("files_new", "added")),
    ("updated", ("files_changed", "updated")),
    ("deleted", ("files_deleted", "deleted")),
    ("unchanged", ("files_unchanged", "unchanged")),
    ("failed", ("files_failed", "failed")),
    ("encoded", ("chunks_encoded", "encoder_calls")),
)

HEADERS = ("+", "~", "-", "=", "!", "enc")  # short, so that the table fits 80 columns
CAPTION = "files + added ~ updated - deleted = unchanged ! failed · enc: chunks encoded"


@app.callback()
def runs_command(
    ctx: typer.Context,
    workspace: WorkspaceOption = Path(".ragkit"),
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only runs of this kind (ingest, reindex...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List the latest runs: id, kind, start, duration, status and counts."""
    ctx.obj = workspace
    if ctx.invoked_subcommand is not None:
        return
    try:
        runs = [_shown(run) for run in _store(workspace).runs(limit, kind=kind)]
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(runs)
        return
    table = Table(title="runs", header_style="bold", caption=CAPTION)
    for column in ("id", "kind", "started", "s", "status", *HEADERS, "gen"):
        left = column in ("kind", "status")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "id")
    for run in runs:
        counts = run["counts"]
        table.add_row(
            str(run["run_id"]) + ("" if run["parent_id"] is None else f" ⊂{run['parent_id']}"),
            run["kind"],
            _when(run["started"]),
            "" if run["seconds"] is None else f"{run['seconds']:.1f}",
            run["status"],
            *("" if counts.get(c) is None else str(counts[c]) for c, _ in COUNTS),
            ",".join(str(g) for g in run["generations"].values()),
        )
    console.print(table)


@app.command("show")
def show_command(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's id (first column of `ragkit runs`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """One run: parameters, counts, error, failed files and its inner jobs."""
    try:
        store = _store(ctx.obj)
        run = store.run(run_id)
        children = [_shown(child) for child in store.child_runs(run_id)]
    except RagkitError as error:
        exit_with(error)
    if run is None:
        err_console.print(f"[bold red]error:[/] no run {run_id} (it may have been pruned)")
        raise typer.Exit(1)
    shown = {**_shown(run), "children": children}
    if as_json:
        print_json(shown)
        return
    console.print(
        f"[bold]run {shown['run_id']}[/] {shown['kind']} · {shown['status']} · started "
        f"{dt.datetime.fromtimestamp(shown['started']).isoformat(' ', 'seconds')}"
        + ("" if shown["seconds"] is None else f" · {shown['seconds']:.1f}s")
        + ("" if shown["parent_id"] is None else f" · inside run {shown['parent_id']}")
    )
    if shown["error"]:
        console.print(f"[red]error:[/] {shown['error']}", highlight=False)
    console.print(f"parameters: {shown['params']}", highlight=False)
    counts = ", ".join(f"{k} {v}" for k, v in shown["counts"].items() if v is not None)
    if counts:
        console.print(f"counts: {counts}")
    for failure in shown["failures"]:
        console.print(f"[red]failed:[/] {failure['path']}: {failure['reason']}", highlight=False)
    for child in children:
        console.print(
            f"inner run {child['run_id']} {child['kind']} · {child['status']}"
            + "".join(f" · {k} {v}" for k, v in child["counts"].items() if v is not None)
        )
        for failure in child["failures"]:
            console.print(f"  [red]failed:[/] {failure['path']}: {failure['reason']}")


def _store(workspace: Path) -> Any:
    import ragkit

    return ragkit.open(workspace, create=False).store


def _shown(run: dict[str, Any]) -> dict[str, Any]:
    """A run as listed: the counts under common names, and a row left ``running`` by a
    process of this host that is gone shown as ``crashed`` (the next job records it so)."""
    from ragkit.pipelines._runner import process_alive

    stats = run["stats"]
    status = run["status"]
    if (
        status == "running"
        and run["host"] == socket.gethostname()
        and run["pid"] is not None
        and not process_alive(run["pid"])
    ):
        status = "crashed"
    counts = {
        column: next((stats[k] for k in keys if isinstance(stats.get(k), int)), None)
        for column, keys in COUNTS
    }
    generations = stats.get("generations") or {}
    return {
        **run,
        "status": status,
        "counts": counts,
        "generations": generations,
        "failures": stats.get("failures") or [],
    }


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M")
