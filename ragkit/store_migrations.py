"""The migrations and alias_history tables (schema 5): what ``ragkit migrate`` records.

A mixin of :class:`ragkit.store.Store`. A migration moves one alias from its ``source``
collection onto a ``target`` (the shadow). Its row holds the state, the backfill cursor (the
last document id the backfill committed: documents after it are still to do), counts, the
plan it was started from, the fitted query adapter and the last gate result. At most one
migration per alias is open (any state but ``finalized`` and ``aborted``).

States::

    backfilling ──(cursor past the last document)──▶ ready ──cutover──▶ cutover
         │                                              ▲                 │  ▲
         └──────────────────abort──▶ aborted             └───rollback──── ▼  │
                                                               rolled-back ──┘ cutover again
    cutover ──finalize──▶ finalized (the source's files are deleted)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

__all__ = ["MIGRATION_STATES", "OPEN_STATES", "AliasMove", "MigrationRecord", "MigrationRows"]

MIGRATION_STATES = ("backfilling", "ready", "cutover", "rolled-back", "finalized", "aborted")
OPEN_STATES = MIGRATION_STATES[:4]
_COLUMNS = (
    "id, alias, source, target, state, cursor, stats_json, plan_json, adapter_json, gate_json"
)


@dataclass(frozen=True)
class MigrationRecord:
    id: int
    alias: str
    source: str
    target: str
    state: str
    cursor: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def serving_adapter(self) -> bool:
        """Whether queries of the source are encoded by the target's model and mapped."""
        return bool(self.adapter.get("serving")) and self.state in ("backfilling", "ready")


@dataclass(frozen=True)
class AliasMove:
    alias: str
    collection: str
    previous: str | None
    reason: str
    at: float


class MigrationRows:
    if TYPE_CHECKING:  # provided by Store
        schema_version: int

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

        def transaction(self) -> AbstractContextManager[None]: ...

    @property
    def has_migrations(self) -> bool:
        """Schema 5 or later (an older store no writer has upgraded has no such tables)."""
        known = getattr(self, "_has_migrations", None)
        if known is None:
            known = self._has_migrations = self.schema_version >= 5
        return known

    def add_migration(
        self, alias: str, source: str, target: str, plan: dict[str, Any]
    ) -> MigrationRecord:
        now = time.time()
        cursor = self._exec(
            "INSERT INTO migrations(alias, source, target, state, plan_json, created, updated)"
            " VALUES(?,?,?,?,?,?,?)",
            (alias, source, target, "backfilling", json.dumps(plan, default=str), now, now),
        )
        record = self.migration(int(cursor.lastrowid or 0))
        assert record is not None
        return record

    def migration(self, migration_id: int) -> MigrationRecord | None:
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations WHERE id=?", (migration_id,)
        )
        return _record(rows[0]) if rows else None

    def open_migration(self, alias: str | None = None) -> MigrationRecord | None:
        """The open migration of ``alias`` (of any alias when None; the newest first)."""
        if not self.has_migrations:
            return None
        marks = ",".join("?" * len(OPEN_STATES))
        where, params = f"state IN ({marks})", list(OPEN_STATES)
        if alias is not None:
            where += " AND alias=?"
            params.append(alias)
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations WHERE {where}"
            " ORDER BY id DESC LIMIT 1",
            params,
        )
        return _record(rows[0]) if rows else None

    def open_migrations(self) -> list[MigrationRecord]:
        if not self.has_migrations:
            return []
        marks = ",".join("?" * len(OPEN_STATES))
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations WHERE state IN ({marks})"
            " ORDER BY id",
            list(OPEN_STATES),
        )
        return [_record(row) for row in rows]

    def migrations(self, limit: int = 20) -> list[MigrationRecord]:
        if not self.has_migrations:
            return []
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_record(row) for row in rows]

    def backfilling(self, collection: str) -> MigrationRecord | None:
        """The open migration whose shadow ``collection`` is still being backfilled: its
        dense index holds only part of the store's chunks, by design."""
        if not self.has_migrations:
            return None
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations"
            " WHERE target=? AND state='backfilling' ORDER BY id DESC LIMIT 1",
            (collection,),
        )
        return _record(rows[0]) if rows else None

    def adapter_serving(self, collection: str) -> MigrationRecord | None:
        """The open migration whose query adapter answers for ``collection`` (its source)."""
        if not self.has_migrations:
            return None
        rows = self._query(
            f"SELECT {_COLUMNS}, created, updated FROM migrations WHERE source=?"
            " AND state IN ('backfilling', 'ready') ORDER BY id DESC LIMIT 1",
            (collection,),
        )
        record = _record(rows[0]) if rows else None
        return record if record is not None and record.serving_adapter else None

    def update_migration(self, migration_id: int, **fields: Any) -> None:
        allowed = {"state", "cursor", "stats", "plan", "adapter", "gate"}
        if not set(fields) <= allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a migration")
        if "state" in fields and fields["state"] not in MIGRATION_STATES:
            raise ValueError(
                f"migration state {fields['state']!r} is not one of {MIGRATION_STATES}"
            )
        columns = {k if k in ("state", "cursor") else f"{k}_json": v for k, v in fields.items()}
        values = [
            v if k in ("state", "cursor") else json.dumps(v, default=str) for k, v in fields.items()
        ]
        assignments = ", ".join(f"{column}=?" for column in columns)
        self._exec(
            f"UPDATE migrations SET {assignments}, updated=? WHERE id=?",
            (*values, time.time(), migration_id),
        )

    # -- alias history ------------------------------------------------------------------------
    def record_alias_move(
        self, alias: str, collection: str, previous: str | None, reason: str
    ) -> None:
        if self.has_migrations:
            self._exec(
                "INSERT INTO alias_history(alias, collection, previous, reason, at)"
                " VALUES(?,?,?,?,?)",
                (alias, collection, previous, reason, time.time()),
            )

    def alias_history(self, alias: str | None = None, limit: int = 50) -> list[AliasMove]:
        if not self.has_migrations:
            return []
        where, params = ("WHERE alias=?", [alias]) if alias else ("", [])
        rows = self._query(
            "SELECT alias, collection, previous, reason, at FROM alias_history"
            f" {where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [AliasMove(*row) for row in rows]


def _record(row: sqlite3.Row) -> MigrationRecord:
    values = list(row)
    return MigrationRecord(
        id=int(values[0]),
        alias=values[1],
        source=values[2],
        target=values[3],
        state=values[4],
        cursor=values[5],
        stats=json.loads(values[6]),
        plan=json.loads(values[7]),
        adapter=json.loads(values[8]),
        gate=json.loads(values[9]),
        created=float(values[10]),
        updated=float(values[11]),
    )
