"""What several migration steps check: a backfill running elsewhere, the aliased collection."""

from __future__ import annotations

import socket
from typing import Any

from ragkit.collection import Collection
from ragkit.errors import WorkspaceError
from ragkit.pipelines._runner import process_alive
from ragkit.workspace import Workspace

__all__ = ["aliased", "refuse_running_backfill", "running_backfill"]


def running_backfill(workspace: Workspace, exclude: int | None = None) -> dict[str, Any] | None:
    """A ``migrate`` job still running (it lets the lock go while it encodes): pid and host.
    A row of this host whose process is gone is a crash, not a running backfill."""
    host = socket.gethostname()
    for row in workspace.store.runs(limit=50, kind="migrate"):
        if row["status"] != "running" or row["run_id"] == exclude:
            continue
        if row.get("host") == host and (
            row.get("pid") is None or not process_alive(int(row["pid"]))
        ):
            continue
        return {"run_id": row["run_id"], "pid": row.get("pid"), "host": row.get("host")}
    return None


def refuse_running_backfill(workspace: Workspace, own_run: int) -> None:
    running = running_backfill(workspace, exclude=own_run)
    if running is not None:
        where = f"pid {running['pid']} on {running['host']}"
        here = running["host"] == socket.gethostname()
        raise WorkspaceError(
            f"a migration backfill is running ({where}, run {running['run_id']}); wait for "
            f"it to finish{', or stop it with Ctrl-C / kill' if here else ''} first"
        )


def aliased(workspace: Workspace, alias: str) -> Collection:
    source = workspace.collection(alias)
    if source is None:
        raise WorkspaceError(
            f"{workspace.root}: no collection behind {alias!r}; run `ragkit ingest PATH` first"
        )
    return source
