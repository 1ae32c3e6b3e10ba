"""``ragkit schedule``: print (never install) a crontab line and a systemd service + timer."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli._common import WorkspaceOption, exit_with, print_json
from ragkit.errors import ConfigError, RagkitError


def schedule_command(
    every: Annotated[
        str | None, typer.Option("--every", help="Interval: 15m, 1h, 6h, 1d...")
    ] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help='A cron expression, e.g. "0 * * * *".')
    ] = None,
    workspace: WorkspaceOption = Path(".ragkit"),
    wait: Annotated[
        float,
        typer.Option(help="Seconds a run waits for a running job before exiting 75."),
    ] = 600.0,
    log_file: Annotated[
        Path | None,
        typer.Option(help="cron only: where output is appended (default: WORKSPACE/reindex.log)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the three texts as JSON.")] = False,
) -> None:
    """Print a schedule for `ragkit reindex`: a crontab line, and a systemd service and
    timer to save as ragkit-reindex.service / ragkit-reindex.timer. Nothing is installed."""
    from ragkit.schedule import cron_from_interval, parse_cron, parse_interval, render

    try:
        if (every is None) == (cron is None):
            raise ConfigError("give exactly one of --every (e.g. 1h) or --cron (e.g. '0 * * * *')")
        expression = cron if cron is not None else cron_from_interval(parse_interval(every or ""))
        schedule = parse_cron(expression)
    except RagkitError as error:
        exit_with(error)
    workspace = workspace.absolute()
    texts = render(
        schedule,
        workspace=workspace,
        ragkit_bin=_ragkit_bin(),
        working_dir=workspace.parent,
        wait=wait,
        log_file=log_file or workspace / "reindex.log",
    )
    if as_json:
        print_json(texts)
        return
    sys.stdout.write(
        "# crontab -e, add:\n"
        f"{texts['cron']}\n\n"
        "# or systemd: ~/.config/systemd/user/ragkit-reindex.service "
        "(or /etc/systemd/system/)\n"
        f"{texts['service']}\n"
        "# ragkit-reindex.timer, then: systemctl --user enable --now ragkit-reindex.timer\n"
        f"{texts['timer']}"
    )


def _ragkit_bin() -> Path:
    """The ``ragkit`` script of the running environment (its bin folder goes on PATH)."""
    beside = Path(sys.executable).parent / "ragkit"
    if beside.exists():
        return beside.absolute()
    found = shutil.which("ragkit")
    return Path(os.path.abspath(found)) if found else beside.absolute()
