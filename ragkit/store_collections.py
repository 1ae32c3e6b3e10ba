"""The collections and aliases tables: each collection's spec, state and committed generation.

A mixin of :class:`ragkit.store.Store`. A query resolves an alias to a collection once and
then uses that collection's own spec (encoder included), so :meth:`set_alias`, one
transaction, switches collection and query encoder together.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragkit.collection_spec import STATES, CollectionSpec
from ragkit.config import WorkspaceConfig
from ragkit.errors import WorkspaceError
from ragkit.store_schema import legacy_spec

__all__ = ["CollectionRecord", "CollectionRows"]

_COLUMNS = (
    "name, model_fp, chunking_fp, backend, dim, state, generation, encoder_json, index_json,"
    " sparse_fp, sparse_json"
)


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    name: str
    model_fp: str
    chunking_fp: str
    backend: str
    dim: int
    state: str
    generation: int
    encoder: dict[str, Any]
    index: dict[str, Any]
    sparse_fp: str = ""
    sparse: dict[str, Any] = field(default_factory=dict)
    spec: CollectionSpec = field(default_factory=CollectionSpec)


class CollectionRows:
    if TYPE_CHECKING:  # provided by Store
        seed_config: WorkspaceConfig | None

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

        def transaction(self) -> AbstractContextManager[None]: ...

        def get_meta(self, key: str) -> str | None: ...

        def record_alias_move(
            self, alias: str, collection: str, previous: str | None, reason: str
        ) -> None: ...

        @property
        def chunks_scoped(self) -> bool: ...

    def put_collection(self, record: CollectionRecord) -> None:
        if record.state not in STATES:
            raise ValueError(f"collection state {record.state!r} is not one of {STATES}")
        now = time.time()
        index = {k: v for k, v in record.index.items() if k != "qdrant_api_key"}
        self._exec(
            f"INSERT INTO collections({_COLUMNS}, spec_json, created, updated)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.name,
                record.model_fp,
                record.chunking_fp,
                record.backend,
                record.dim,
                record.state,
                record.generation,
                json.dumps(record.encoder, default=str),
                json.dumps(index),
                record.sparse_fp,
                json.dumps(record.sparse, default=str),
                record.spec.to_json(),
                now,
                now,
            ),
        )

    def collection(self, name: str) -> CollectionRecord | None:
        scoped = self.chunks_scoped  # schema 4: the row holds its spec
        extra = ", spec_json" if scoped else ""
        rows = self._query(f"SELECT {_COLUMNS}{extra} FROM collections WHERE name=?", (name,))
        if not rows:
            return None
        values = dict(zip([c.strip() for c in _COLUMNS.split(",")], rows[0], strict=False))
        if scoped:
            spec = CollectionSpec.from_json(rows[0][-1])
        else:  # an old store no writer has upgraded: the spec the upgrade will write
            spec = legacy_spec(
                values, self.get_meta("chunking_fp") or "", self.seed_config or WorkspaceConfig()
            )
        state = "live" if values["state"] == "ready" else values["state"]
        return CollectionRecord(
            name=values["name"],
            model_fp=values["model_fp"],
            chunking_fp=spec.chunking.fingerprint or values["chunking_fp"],
            backend=values["backend"],
            dim=values["dim"],
            state=state,
            generation=values["generation"],
            encoder=json.loads(values["encoder_json"]),
            index=json.loads(values["index_json"]),
            sparse_fp=values["sparse_fp"],
            sparse=json.loads(values["sparse_json"]),
            spec=spec,
        )

    def collections(self) -> list[CollectionRecord]:
        names = [row[0] for row in self._query("SELECT name FROM collections ORDER BY created")]
        return [record for name in names if (record := self.collection(name))]

    def set_collection(self, name: str, **fields: Any) -> None:
        allowed = {"state", "generation", "chunking_fp", "sparse_fp", "sparse_json"}
        if not set(fields) <= allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a collection")
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"collection state {fields['state']!r} is not one of {STATES}")
        assignments = ", ".join(f"{key}=?" for key in fields)
        self._exec(
            f"UPDATE collections SET {assignments}, updated=? WHERE name=?",
            (*fields.values(), time.time(), name),
        )

    def rekey_encoder(self, name: str, old_fp: str, encoder: dict[str, Any]) -> None:
        """Give collection ``name`` and the cached vectors under ``old_fp`` the id of
        ``encoder`` (a fingerprint describing the same model), in one transaction: how a
        collection fingerprinted by an older formula is upgraded without re-encoding."""
        new_fp = encoder["id"]
        with self.transaction():
            record = self.collection(name)
            self._exec(
                "UPDATE collections SET model_fp=?, encoder_json=?, updated=? WHERE name=?",
                (new_fp, json.dumps(encoder, default=str), time.time(), name),
            )
            if record is not None and self.chunks_scoped:
                spec = record.spec
                rekeyed = dataclasses.replace(
                    spec, encoder=dataclasses.replace(spec.encoder, fingerprint=new_fp)
                )
                self._exec(
                    "UPDATE collections SET spec_json=? WHERE name=?", (rekeyed.to_json(), name)
                )
            # A vector already cached under the new id is the same model's: keep either one.
            self._exec(
                "INSERT OR IGNORE INTO embeddings(text_hash, model_fp, vector)"
                " SELECT text_hash, ?, vector FROM embeddings WHERE model_fp=?",
                (new_fp, old_fp),
            )
            if not self._query("SELECT 1 FROM collections WHERE model_fp=? LIMIT 1", (old_fp,)):
                self._exec("DELETE FROM embeddings WHERE model_fp=?", (old_fp,))

    def set_alias(
        self,
        alias: str,
        collection: str,
        *,
        reason: str = "set",
        retire_previous: bool = False,
        allow_retired: bool = False,
    ) -> None:
        """Point ``alias`` at ``collection`` in one transaction; a building (or, with
        ``allow_retired``, a retired) collection an alias now points at is live, and with
        ``retire_previous`` the collection the alias pointed at before is retired (kept in
        step for a rollback). Queries resolve the alias once, so each one runs wholly on the
        old collection or wholly on the new one. The move is recorded in the alias history."""
        with self.transaction():
            record = self.collection(collection)
            if record is None:
                raise WorkspaceError(f"no collection {collection!r} to point alias {alias!r} at")
            if record.state == "retired" and not allow_retired:
                raise WorkspaceError(
                    f"collection {collection!r} is retired; `ragkit migrate rollback` brings "
                    "a retired collection back"
                )
            if record.state != "live":
                self.set_collection(collection, state="live")
            previous = self.resolve_alias(alias)
            self._exec(
                "INSERT OR REPLACE INTO aliases(alias, collection) VALUES(?, ?)",
                (alias, collection),
            )
            if retire_previous and previous and previous != collection:
                still_aliased = self._query(
                    "SELECT 1 FROM aliases WHERE collection=? LIMIT 1", (previous,)
                )
                if not still_aliased:
                    self.set_collection(previous, state="retired")
            self.record_alias_move(alias, collection, previous, reason)

    def delete_collection(self, name: str, *, drop_cache: bool = False) -> dict[str, int]:
        """Remove a collection's rows: the collection, its checksums, its chunk rows when no
        other collection is chunked the same way (documents stay) and, with ``drop_cache``,
        its encoder's cached vectors when no other collection uses that encoder. Call inside
        a transaction; the caller removes the files after the commit."""
        record = self.collection(name)
        if record is None:
            raise WorkspaceError(f"no collection {name!r}")
        if self._query("SELECT 1 FROM aliases WHERE collection=? LIMIT 1", (name,)):
            raise WorkspaceError(f"collection {name!r} is behind an alias; move the alias first")
        self._exec("DELETE FROM collections WHERE name=?", (name,))
        self._exec("DELETE FROM index_checksums WHERE collection=?", (name,))
        removed = {"chunks": 0, "vectors": 0}
        others = [r for r in self.collections() if r.name != name]
        if self.chunks_scoped and not any(r.chunking_fp == record.chunking_fp for r in others):
            cursor = self._exec("DELETE FROM chunks WHERE chunking_fp=?", (record.chunking_fp,))
            removed["chunks"] = cursor.rowcount
        if drop_cache and not any(r.model_fp == record.model_fp for r in others):
            cursor = self._exec("DELETE FROM embeddings WHERE model_fp=?", (record.model_fp,))
            removed["vectors"] = cursor.rowcount
        return removed

    def aliases(self) -> dict[str, str]:
        return dict(self._query("SELECT alias, collection FROM aliases ORDER BY alias"))

    def resolve_alias(self, alias: str) -> str | None:
        rows = self._query("SELECT collection FROM aliases WHERE alias=?", (alias,))
        return rows[0][0] if rows else None
