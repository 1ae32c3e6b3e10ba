"""The runs and checkpoints tables: what each job did, and where a resumable job got to.

A mixin of :class:`ragkit.store.Store`, apart from the core tables because these rows describe
jobs, not the corpus: no index is derived from them, and ``Workspace.status`` reads them to show
the last run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

__all__ = ["JobRun", "RunLog"]


@dataclass
class JobRun:
    """The ``runs`` row of a job in progress; the job sets its outcome before it ends."""

    run_id: int
    status: str = "ok"
    stats: dict[str, Any] = field(default_factory=dict)

    def outcome(self, ok: bool, stats: dict[str, Any]) -> None:
        self.status = "ok" if ok else "partial"
        self.stats = stats


class RunLog:
    """Job bookkeeping: one ``runs`` row per job, and ``(job, key) -> value`` checkpoints."""

    if TYPE_CHECKING:  # provided by Store

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

    def get_checkpoint(self, job: str, key: str) -> str | None:
        rows = self._query("SELECT value FROM checkpoints WHERE job=? AND key=?", (job, key))
        return rows[0][0] if rows else None

    def set_checkpoint(self, job: str, key: str, value: str) -> None:
        self._exec(
            "INSERT OR REPLACE INTO checkpoints(job, key, value) VALUES(?, ?, ?)", (job, key, value)
        )

    def start_run(self, kind: str, pid: int, host: str) -> int:
        cursor = self._exec(
            "INSERT INTO runs(kind, started, status, pid, host) VALUES(?, ?, 'running', ?, ?)",
            (kind, time.time(), pid, host),
        )
        return int(cursor.lastrowid)

    @contextmanager
    def recorded_run(self, kind: str) -> Iterator[JobRun]:
        """One ``runs`` row for the job in the block: ``running`` meanwhile, then its outcome,
        or ``failed`` with the error when the block raises (a crash leaves ``running``)."""
        run = JobRun(self.start_run(kind, os.getpid(), socket.gethostname()))
        try:
            yield run
        except BaseException as exc:
            self.finish_run(run.run_id, "failed", {}, f"{type(exc).__name__}: {exc}")
            raise
        self.finish_run(run.run_id, run.status, run.stats, None)

    def finish_run(
        self, run_id: int, status: str, stats: dict[str, Any], error: str | None
    ) -> None:
        self._exec(
            "UPDATE runs SET finished=?, status=?, stats_json=?, error=? WHERE run_id=?",
            (time.time(), status, json.dumps(stats, default=str), error, run_id),
        )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT run_id, kind, started, finished, status, stats_json, error FROM runs "
            "ORDER BY run_id DESC LIMIT ?",
            (limit,),
        )
        keys = ("run_id", "kind", "started", "finished", "status", "stats", "error")
        return [
            dict(zip(keys, (*row[:5], json.loads(row[5]), row[6]), strict=True)) for row in rows
        ]
