"""Options and rendering shared by the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from ragkit.errors import RagkitError

__all__ = ["WorkspaceOption", "console", "err_console", "exit_with", "print_json"]

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
