"""``ragkit ingest PATH...``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    TextColumn,
)
from rich.table import Table

from ragkit.cli._common import (
    EXIT_PARTIAL,
    ProgressView,
    WorkspaceOption,
    console,
    exit_with,
    print_json,
)
from ragkit.errors import RagkitError


def ingest_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or folders to ingest. None: re-ingest the configured sources."),
    ] = None,
    workspace: WorkspaceOption = Path(".ragkit"),
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Glob of files to take, e.g. '**/*.md'."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help="Glob of files to skip.")
    ] = None,
    follow_symlinks: Annotated[
        bool, typer.Option(help="Follow symlinks that leave the source folder.")
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another writer to finish.")
    ] = 0.0,
    commit_every: Annotated[
        int,
        typer.Option(
            min=1, help="Chunks per atomic commit (smaller: less work redone after a crash)."
        ),
    ] = 4096,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest files incrementally: only new or changed content is embedded; deleted files
    leave the index.

    Exit codes: 0 all ingested, 3 some files failed (listed), 1 error, 75 workspace locked.
    """
    import ragkit

    try:
        kit = ragkit.open(workspace)
        with _progress(quiet=as_json) as on_progress:
            report = kit.ingest(
                *(paths or []),
                include=include,
                exclude=exclude,
                follow_symlinks=follow_symlinks,
                wait=wait,
                commit_every=commit_every,
                progress=on_progress,
            )
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


class _progress(ProgressView):
    """Files done, chunks embedded and the embedding rate."""

    def __init__(self, *, quiet: bool) -> None:
        columns = (TextColumn("{task.fields[chunks]} chunks embedded · {task.fields[rate]}"),)
        super().__init__(quiet=quiet, extra_columns=columns)
        self.task = self.bar.add_task("files", total=None, chunks=0, rate="")
        self.chunks = 0
        self.sparse = 0
        self.retries = 0
        self.throttled = 0

    def update(self, event: str, n: int) -> None:
        task = self.bar.tasks[0]
        if event == "files_total":
            self.bar.update(self.task, total=(task.total or 0) + n)
        elif event == "file":
            self.bar.advance(self.task, n)
        elif event == "sparse_chunks":
            self.sparse += n
            self.bar.update(self.task, description=f"files · sparse index {self.sparse} chunks")
        elif event == "chunks":
            self.chunks += n
            elapsed = task.elapsed or 0
            rate = f"{self.chunks / elapsed:.0f} chunks/s" if elapsed else ""
            self.bar.update(self.task, chunks=self.chunks, rate=rate + self._remote())
        elif event in ("retry", "throttle"):  # a remote encoder's retries and rate limits
            if event == "retry":
                self.retries += n
            else:
                self.throttled += n
            self.bar.update(
                self.task, rate=(task.fields.get("rate") or "").split(" · ")[0] + self._remote()
            )

    def _remote(self) -> str:
        parts = [f"{self.retries} retries"] if self.retries else []
        if self.throttled:
            parts.append(f"throttled {self.throttled}×")
        return "".join(f" · {part}" for part in parts)


def _render(report) -> None:  # type: ignore[no-untyped-def]
    table = Table(title="ingest", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("new", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("unchanged", justify="right")
    table.add_column("deleted", justify="right")
    table.add_column("failed", justify="right")
    table.add_row(
        "files",
        str(report.files_new),
        str(report.files_changed),
        str(report.files_unchanged),
        str(report.files_deleted),
        str(report.files_failed),
    )
    table.add_row(
        "documents",
        str(report.documents_added),
        str(report.documents_updated),
        "",
        str(report.documents_deleted),
        "",
    )
    table.add_row("chunks", str(report.chunks_added), "", "", str(report.chunks_deleted), "")
    console.print(table)
    rate = report.chunks_encoded / report.encode_seconds if report.encode_seconds else 0.0
    console.print(
        f"{report.chunks_encoded} chunks embedded ({report.chunks_from_cache} from cache)"
        + (f" at {rate:.0f} chunks/s" if rate else "")
        + f" in {report.seconds:.1f}s · run {report.run_id}"
    )
    if report.failures:
        failures = Table(
            title=f"{len(report.failures)} files not ingested", header_style="bold red"
        )
        failures.add_column("file", overflow="fold")
        failures.add_column("reason", overflow="fold")
        for failure in report.failures:
            failures.add_row(failure.path, failure.reason)
        console.print(failures)
    for problem in report.problems[:20]:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False)
