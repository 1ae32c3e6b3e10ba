"""Options and rendering shared by the commands."""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragkit.errors import RagkitError

__all__ = [
    "LogEveryOption",
    "ProgressView",
    "WorkspaceOption",
    "console",
    "err_console",
    "exit_with",
    "print_json",
    "print_table",
    "warn_of",
]

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="RAGKIT_WORKSPACE",
        help="Workspace folder (config, store, indexes).",
        show_default=True,
    ),
]

LogEveryOption = Annotated[
    float,
    typer.Option(
        "--log-every",
        envvar="RAGKIT_LOG_EVERY",
        min=0.0,
        help="When stderr is not a terminal (cron, CI, a pipe): seconds between progress lines.",
    ),
]

# Exit codes, documented in README for cron and CI use.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_LOCKED = 75


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def exit_with(error: RagkitError) -> NoReturn:
    from ragkit.errors import WorkspaceLockedError

    err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_LOCKED if isinstance(error, WorkspaceLockedError) else EXIT_ERROR)


def warn_of(caught: list[warnings.WarningMessage]) -> None:
    """Show ragkit's warnings (a degraded answer) on stderr, one line each, so that --json
    output stays clean; any other warning is passed on as it came."""
    from ragkit.errors import DegradedSearchWarning

    for warning in caught:
        if issubclass(warning.category, DegradedSearchWarning):
            err_console.print(f"[bold yellow]warning:[/] {warning.message}", highlight=False)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    narrow: dict[str, int] | None = None,
) -> None:
    """A table that fits the terminal, or, when stdout is not one (a pipe, a file, CI), plain
    tab-separated lines with every field in full: a script or ``grep`` must never get box
    drawing or a hit text cut at the terminal's width.

    ``right``: columns aligned right; ``narrow``: the most a column may take on a terminal.
    """
    if not console.is_terminal:
        lines = [f"# {title}", "\t".join(columns)]
        lines += ["\t".join(" ".join(str(cell).split()) for cell in row) for row in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    table = Table(title=title, header_style="bold", show_lines=False)
    for name in columns:
        table.add_column(
            name,
            justify="right" if name in right else "left",
            overflow="fold",
            max_width=(narrow or {}).get(name),
            no_wrap=name in right,
        )
    for row in rows:
        table.add_row(*map(str, row))
    console.print(table)


class ProgressView:
    """Progress on stderr fed by a job's ``(event, count)`` callback: a rich bar on a terminal,
    and one plain line every ``log_every`` seconds elsewhere (cron, CI, ``| tee``), where a bar
    would be an unreadable stream of redraws or nothing at all.

    ``with View(quiet=...) as on_progress:`` hands the callback to the job; subclasses say what
    each event does in :meth:`update` and what a log line says in :meth:`describe`. One clock,
    :attr:`started`, times the bar, the log lines and (through :meth:`elapsed`) the summary.
    """

    def __init__(
        self, *, quiet: bool, extra_columns: tuple[Any, ...] = (), log_every: float = 5.0
    ) -> None:
        self.quiet = quiet
        self.log = not quiet and not err_console.is_terminal
        self.log_every = log_every
        self.started = time.monotonic()
        self.finished: float | None = None
        self._last_log = self.started
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            *extra_columns,
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet or self.log,  # the tasks are still counted: log lines read them
        )

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.bar.__enter__()
        if self.log and self.log_every > 0:
            # A job can go quiet for a long time (loading a model, one big encode batch): the
            # ticker keeps the log saying that it is alive and how far it got.
            self._ticker = threading.Thread(target=self._tick, name="progress-log", daemon=True)
            self._ticker.start()
        return self._on_event

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.finished = time.monotonic()
        self.bar.__exit__(*exc)
        if self.log and exc[0] is None:
            self._write_log("done")

    def _tick(self) -> None:
        while not self._stop.wait(self.log_every / 4):
            self._maybe_log()

    def elapsed(self) -> float:
        """Seconds since the view started, frozen when it ends."""
        return (self.finished or time.monotonic()) - self.started

    def _on_event(self, event: str, n: int) -> None:
        self.update(event, n)
        if self.log:
            self._maybe_log()

    def _maybe_log(self) -> None:
        with self._log_lock:
            now = time.monotonic()
            if now - self._last_log >= self.log_every and not self._stop.is_set():
                self._last_log = now
                self._write_log("progress")

    def _write_log(self, label: str) -> None:
        err_console.print(
            f"{label}: {self.describe()} · {self.elapsed():.1f}s", highlight=False, soft_wrap=True
        )

    def describe(self) -> str:
        """One log line's content; the default reads the first task of the bar."""
        if not self.bar.tasks:
            return ""
        task = self.bar.tasks[0]
        total = f"/{task.total:.0f}" if task.total else ""
        return f"{task.description} {task.completed:.0f}{total}"

    def update(self, event: str, n: int) -> None:
        raise NotImplementedError
