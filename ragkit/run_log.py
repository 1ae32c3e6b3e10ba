"""The runs and checkpoints tables: what each job did, and where a resumable job got to.

A mixin of :class:`ragkit.store.Store`, apart from the core tables because these rows describe
jobs, not the corpus: no index is derived from them, and ``Workspace.status`` reads them to show
the last run. The rules of a job (one lock, when a run counts as crashed, which parameters are
kept) are the job runner's, ``ragkit.pipelines._runner``; this is only its storage.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

__all__ = ["RunLog"]


class RunLog:
    """Job bookkeeping: one ``runs`` row per job, and ``(job, key) -> value`` checkpoints."""

    if TYPE_CHECKING:  # provided by Store

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

    # -- checkpoints ------------------------------------------------------------------------
    def get_checkpoint(self, job: str, key: str) -> str | None:
        rows = self._query("SELECT value FROM checkpoints WHERE job=? AND key=?", (job, key))
        return rows[0][0] if rows else None

    def set_checkpoint(self, job: str, key: str, value: str) -> None:
        self._exec(
            "INSERT OR REPLACE INTO checkpoints(job, key, value) VALUES(?, ?, ?)", (job, key, value)
        )

    def clear_checkpoints(self, job: str) -> None:
        self._exec("DELETE FROM checkpoints WHERE job=?", (job,))

    # -- runs -------------------------------------------------------------------------------
    def start_run(
        self,
        kind: str,
        pid: int,
        host: str,
        params: dict[str, Any] | None = None,
        parent_id: int | None = None,
    ) -> int:
        cursor = self._exec(
            "INSERT INTO runs(kind, started, status, pid, host, params_json, parent_id) "
            "VALUES(?, ?, 'running', ?, ?, ?, ?)",
            (kind, time.time(), pid, host, json.dumps(params or {}, default=str), parent_id),
        )
        return int(cursor.lastrowid)

    def finish_run(
        self, run_id: int, status: str, stats: dict[str, Any], error: str | None
    ) -> None:
        self._exec(
            "UPDATE runs SET finished=?, status=?, stats_json=?, error=? WHERE run_id=?",
            (time.time(), status, json.dumps(stats, default=str), error, run_id),
        )

    def running_runs(self) -> list[tuple[int, int | None, str | None]]:
        """``(run_id, pid, host)`` of every run still marked ``running``."""
        rows = self._query("SELECT run_id, pid, host FROM runs WHERE status='running'")
        return [(int(row[0]), row[1], row[2]) for row in rows]

    def mark_crashed(self, run_ids: Iterable[int], error: str) -> None:
        """Runs whose process ended without finishing them: ``finished`` stays empty, since
        when the process died is not known."""
        for run_id in run_ids:
            self._exec(
                "UPDATE runs SET status='crashed', error=? WHERE run_id=? AND status='running'",
                (error, run_id),
            )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs, newest first. A store not yet upgraded to schema 3 (opened by a
        reader) has no parameters or parent: those read as empty."""
        rows = self._query("SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", (limit,))
        names = [
            column[1] for column in self._query("PRAGMA table_info(runs)")
        ]  # SELECT * returns the columns in this order
        out = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            started, finished = record["started"], record["finished"]
            out.append(
                {
                    "run_id": record["run_id"],
                    "kind": record["kind"],
                    "started": started,
                    "finished": finished,
                    "seconds": None if finished is None else round(finished - started, 3),
                    "status": record["status"],
                    "params": json.loads(record.get("params_json") or "{}"),
                    "stats": json.loads(record["stats_json"]),
                    "error": record["error"],
                    "parent_id": record.get("parent_id"),
                }
            )
        return out
