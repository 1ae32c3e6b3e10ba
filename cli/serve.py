"""``ragkit serve``: the HTTP API and search page over a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragkit.cli._common import WorkspaceOption, exit_with
from ragkit.errors import RagkitError


def serve_command(
    workspace: WorkspaceOption = Path(".ragkit"),
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --api-key-env.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            metavar="VAR",
            help="Environment variable holding the bearer token clients must send.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Requests handed to worker threads at once.")
    ] = 4,
) -> None:
    """Serve queries over HTTP (POST /query, /query/batch; GET /health, /stats,
    /collections; docs at /docs) and a search page at /."""
    try:
        from ragkit.server.launch import run_server

        run_server(
            workspace, host=host, port=port, api_key_env=api_key_env, concurrency=concurrency
        )
    except RagkitError as error:
        exit_with(error)
