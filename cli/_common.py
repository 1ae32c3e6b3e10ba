"""Options and rendering shared by the commands."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragkit.errors import RagkitError

__all__ = [
    "ProgressView",
    "WorkspaceOption",
    "console",
    "err_console",
    "exit_with",
    "print_json",
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


class ProgressView:
    """A rich progress bar on stderr fed by a job's ``(event, count)`` callback.

    ``with View(quiet=...) as on_progress:`` hands the callback to the job; subclasses say what
    each event does in :meth:`update`.
    """

    def __init__(self, *, quiet: bool, extra_columns: tuple[Any, ...] = ()) -> None:
        self.quiet = quiet
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            *extra_columns,
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
        )

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def update(self, event: str, n: int) -> None:
        raise NotImplementedError
