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

    def runs(self, limit: int = 20, *, kind: str | None = None) -> list[dict[str, Any]]:
        """The latest runs (of ``kind``, when given), newest first. Run ids come from SQLite's
        AUTOINCREMENT, so they only grow, whatever the clock does. A store not yet upgraded to
        schema 3 (opened by a reader) has no parameters or parent: those read as empty."""
        where, params = ("WHERE kind=?", [kind]) if kind else ("", [])
        return self._run_records(
            f"SELECT * FROM runs {where} ORDER BY run_id DESC LIMIT ?", [*params, limit]
        )

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run, or None when there is no such run (or it was pruned)."""
        found = self._run_records("SELECT * FROM runs WHERE run_id=?", [run_id])
        return found[0] if found else None

    def child_runs(self, run_id: int) -> list[dict[str, Any]]:
        """The inner jobs of a run (a reindex's ingest), oldest first."""
        if "parent_id" not in self._run_columns():
            return []
        return self._run_records("SELECT * FROM runs WHERE parent_id=? ORDER BY run_id", [run_id])

    def prune_runs(self, *, keep: int, keep_days: float, now: float | None = None) -> int:
        """Delete finished runs beyond the newest ``keep`` and those started more than
        ``keep_days`` ago (``0``: no such bound); a ``running`` row is never deleted, since its
        job (or the reaper, for a dead one) still has to finish it. Returns how many went."""
        removed = 0
        if keep > 0:
            cursor = self._exec(
                "DELETE FROM runs WHERE status != 'running' AND run_id <= "
                "(SELECT run_id FROM runs ORDER BY run_id DESC LIMIT 1 OFFSET ?)",
                (keep,),
            )
            removed += max(cursor.rowcount, 0)
        if keep_days > 0:
            cutoff = (time.time() if now is None else now) - keep_days * 86400
            cursor = self._exec(
                "DELETE FROM runs WHERE status != 'running' AND started < ?", (cutoff,)
            )
            removed += max(cursor.rowcount, 0)
        return removed

    def _run_columns(self) -> list[str]:
        # SELECT * returns the columns in this order
        return [column[1] for column in self._query("PRAGMA table_info(runs)")]

    def _run_records(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        names = self._run_columns()
        out = []
        for row in self._query(sql, params):
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
                    "pid": record.get("pid"),
                    "host": record.get("host"),
                }
            )
        return out
