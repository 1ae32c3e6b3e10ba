"""``ragkit ingest PATH...``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TextColumn

from ragkit.cli._common import (
    EXIT_PARTIAL,
    LogEveryOption,
    ProgressView,
    WorkspaceOption,
    console,
    err_console,
    exit_with,
    print_json,
    print_table,
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
        typer.Option(
            "--include", "-i", help="Glob of files to take, e.g. '**/*.md' (default: saved)."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="Glob of files to skip (default: the saved ones)."),
    ] = None,
    follow_symlinks: Annotated[
        bool, typer.Option(help="Follow symlinks that leave the source folder.")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Count files of unsupported types as failures (exit 3).")
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
    log_every: LogEveryOption = 5.0,
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
    """Ingest files incrementally: only new or changed content is embedded; deleted files
    leave the index. Files of unsupported types in a folder are skipped and counted.

    A source keeps the --include/--exclude globs it was first ingested with until new ones
    are given. Exit codes: 0 all ingested, 3 some files failed (listed), 1 error, 75 locked.
    """
    import ragkit
    from ragkit.pipelines.sources import refuse_missing_paths

    try:
        if paths and not (workspace / "store.sqlite").exists():
            # Before anything is created: a typo'd path leaves no workspace behind.
            refuse_missing_paths([str(p) for p in paths])
        kit = ragkit.open(workspace, create=bool(paths))
        view = _progress(quiet=as_json, log_every=log_every)
        with view as on_progress:
            report = kit.ingest(
                *(paths or []),
                include=include,
                exclude=exclude,
                follow_symlinks=follow_symlinks,
                strict=strict,
                wait=wait,
                commit_every=commit_every,
                progress=on_progress,
                ray=ray,
            )
    except RagkitError as error:
        exit_with(error)
    if as_json:
        print_json(report.to_dict())
    else:
        for note in report.notes:
            err_console.print(f"[cyan]note:[/] {note}", highlight=False, soft_wrap=True)
        _render(report, view)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


class _progress(ProgressView):
    """Files done, chunks embedded, the embedding rate and (in log lines) the time left."""

    def __init__(self, *, quiet: bool, log_every: float) -> None:
        columns = (TextColumn("{task.fields[chunks]} chunks embedded · {task.fields[rate]}"),)
        super().__init__(quiet=quiet, extra_columns=columns, log_every=log_every)
        self.task = self.bar.add_task("files", total=None, chunks=0, rate="")
        self.chunks = 0
        self.sparse = 0
        self.retries = 0
        self.throttled = 0

    def rate(self) -> float:
        """Chunks embedded per second of the view's clock, the one the summary uses too."""
        elapsed = self.elapsed()
        return self.chunks / elapsed if elapsed > 0 else 0.0

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
            self.bar.update(
                self.task, chunks=self.chunks, rate=f"{self.rate():.0f} chunks/s{self._remote()}"
            )
        elif event in ("retry", "throttle"):  # a remote encoder's retries and rate limits
            if event == "retry":
                self.retries += n
            else:
                self.throttled += n
            self.bar.update(self.task, rate=f"{self.rate():.0f} chunks/s{self._remote()}")

    def _remote(self) -> str:
        parts = [f"{self.retries} retries"] if self.retries else []
        if self.throttled:
            parts.append(f"throttled {self.throttled}×")
        return "".join(f" · {part}" for part in parts)

    def describe(self) -> str:
        task = self.bar.tasks[0]
        done, total = int(task.completed), int(task.total or 0)
        line = f"files {done}/{total} · {self.chunks} chunks embedded · {self.rate():.0f} chunks/s"
        line += self._remote()
        elapsed = self.elapsed()
        if self.finished is None and 0 < done < total and elapsed > 0:
            line += f" · ETA {_clock((total - done) * elapsed / done)}"
        return line


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _render(report, view: _progress) -> None:  # type: ignore[no-untyped-def]
    print_table(
        "ingest",
        ["", "new", "changed", "unchanged", "deleted", "failed", "skipped"],
        [
            [
                "files",
                str(report.files_new),
                str(report.files_changed),
                str(report.files_unchanged),
                str(report.files_deleted),
                str(report.files_failed),
                str(report.files_skipped),
            ],
            [
                "documents",
                str(report.documents_added),
                str(report.documents_updated),
                "",
                str(report.documents_deleted),
                "",
                "",
            ],
            ["chunks", str(report.chunks_added), "", "", str(report.chunks_deleted), "", ""],
        ],
        right=("new", "changed", "unchanged", "deleted", "failed", "skipped"),
    )
    # The bar's clock and count: the summary says what the last progress line said.
    rate = view.rate() if not view.quiet else 0.0
    elapsed = view.elapsed()
    console.print(
        f"{report.chunks_encoded} chunks embedded ({report.chunks_from_cache} from cache)"
        + (f" at {rate:.0f} chunks/s" if rate else "")
        + f" in {elapsed:.1f}s · run {report.run_id}",
        highlight=False,
    )
    if report.files_skipped:
        console.print(skipped_summary(report.files_skipped, report.skipped_types), highlight=False)
    if report.failures:
        print_table(
            f"{len(report.failures)} files not ingested",
            ["file", "reason"],
            [[failure.path, failure.reason] for failure in report.failures],
        )
    for problem in report.problems[:20]:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False)


def skipped_summary(count: int, by_type: dict[str, int]) -> str:
    """``12 skipped (unsupported type: .css ×8, .png ×4)``: one line, most common type first."""
    kinds = sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
    return (
        f"{count} skipped (unsupported type: "
        + ", ".join(f"{kind} ×{n}" for kind, n in kinds)
        + "); --strict makes them failures"
    )
