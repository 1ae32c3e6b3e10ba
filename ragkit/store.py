"""The SQLite record of truth. Every index is derived from it and can be rebuilt from it.

Vector ids in every index are ``chunks.id`` (AUTOINCREMENT, never reused), so an id in an old
index generation can never point at a different chunk. Embeddings are cached per
(text hash, encoder fingerprint): re-chunking, rebuilding or migrating never re-encodes a text.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.config import WorkspaceConfig
from ragkit.documents import Block, Document
from ragkit.embedding_cache import EmbeddingCache
from ragkit.errors import StoreDamagedError, WorkspaceError
from ragkit.index_checksums import IndexChecksums
from ragkit.run_log import RunLog
from ragkit.store_chunks import ChunkRows
from ragkit.store_collections import CollectionRecord, CollectionRows
from ragkit.store_migrations import MigrationRows
from ragkit.store_schema import SCHEMA_VERSION, create_tables, upgrade_tables

__all__ = ["SCHEMA_VERSION", "CollectionRecord", "FileRecord", "Store", "store_damage"]

# SQLite's result codes for a file that is not (or no longer) a sound database.
_DAMAGE_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ"}


@dataclass(frozen=True, slots=True)
class FileRecord:
    source: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    format: str


class Store(ChunkRows, CollectionRows, EmbeddingCache, IndexChecksums, MigrationRows, RunLog):
    """Thin typed access to ``store.sqlite``; writes happen inside :meth:`transaction`. The
    chunks, the collections and aliases, the embedding cache, the index files' checksums and
    the job records live in mixins (``store_chunks``, ``store_collections``,
    ``embedding_cache``, ``index_checksums``, ``run_log``).

    ``seed_config`` is ragkit.toml as the workspace read it: an upgrade, and a reader of a
    store no writer has upgraded yet, take the settings an older store never recorded from it.
    """

    def __init__(self, path: Path, *, seed_config: WorkspaceConfig | None = None) -> None:
        self.path = path
        self.seed_config = seed_config
        self._scoped: bool | None = None
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed generation must survive power loss, since the previous index
            # files are deleted right after the commit.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise store_damage(path, exc, "cannot open the store") or WorkspaceError(
                f"{path}: cannot open the store ({exc}); check the file's permissions and "
                "that no other program holds it"
            ) from exc
        self._lock = threading.RLock()
        self._in_tx = False
        if not self._query("SELECT 1 FROM sqlite_master WHERE name='meta'"):
            with self.transaction():  # a new store: made current right away, nothing to keep
                create_tables(self._db, seed_config)
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{path} was written by a newer ragkit (schema {version}); upgrade ragkit"
            )

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 1)

    @property
    def chunks_scoped(self) -> bool:
        """Schema 4 or later: chunks carry their chunking fingerprint, collections a spec."""
        if self._scoped is None:
            self._scoped = self.schema_version >= 4
        return self._scoped

    def upgrade(self) -> list[int]:
        """Bring an older store's tables up to date (``ragkit.store_schema.UPGRADES``), in one
        transaction. Only a writer calls this, under the writer lock: opening never writes."""
        if self.schema_version >= SCHEMA_VERSION:
            return []
        try:
            with self.transaction():
                return upgrade_tables(self._db, self.seed_config)
        finally:
            self._scoped = None
            self._has_migrations: bool | None = None

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """SQLite's "malformed" and "not a database" become a :class:`StoreDamagedError` that
        says what to do; busy, locked and constraint errors pass through unchanged."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            damage = store_damage(self.path, exc, doing)
            if damage is None:
                raise
            raise damage from exc

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested use joins the outer transaction."""
        with self._lock:
            if self._in_tx:
                yield
                return
            with self._guard("cannot write to the store"):
                self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield
            except BaseException as exc:
                with contextlib.suppress(sqlite3.DatabaseError):  # keep the first error
                    self._db.execute("ROLLBACK")
                damage = isinstance(exc, sqlite3.DatabaseError) and store_damage(
                    self.path, exc, "cannot write to the store"
                )
                if damage:
                    raise damage from exc
                raise
            else:
                with self._guard("cannot commit to the store"):
                    self._db.execute("COMMIT")
            finally:
                self._in_tx = False

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._guard("cannot read the store"):
            cursor = self._db.execute(sql, params)
            return cursor.fetchall()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock, self._guard("cannot write to the store"):
            return self._db.execute(sql, params)

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def workspace_id(self) -> str:
        """This workspace's random identity, made on first use: what marks the Qdrant
        collections it creates on a shared server or folder as its own ("" when the store
        cannot be written and has none yet)."""
        found = self.get_meta("workspace_id")
        if found:
            return found
        try:
            self._exec(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('workspace_id', ?)",
                (uuid.uuid4().hex,),
            )
        except sqlite3.OperationalError:  # a read-only store
            return ""
        return self.get_meta("workspace_id") or ""

    # -- sources and files ------------------------------------------------------------------
    def upsert_source(self, name: str, root: str, config: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO sources(name, root, config_json, created) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET root=excluded.root, config_json=excluded.config_json",
            (name, root, json.dumps(config), time.time()),
        )

    def sources(self) -> dict[str, str]:
        return {name: root for name, root in self._query("SELECT name, root FROM sources")}

    def files(self, source: str) -> dict[str, FileRecord]:
        rows = self._query(
            "SELECT source, path, size, mtime_ns, content_hash, format FROM files WHERE source=?",
            (source,),
        )
        return {row[1]: FileRecord(*row) for row in rows}

    def put_file(self, record: FileRecord) -> None:
        self._exec(
            "INSERT OR REPLACE INTO files(source, path, size, mtime_ns, content_hash, format, "
            "updated) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (*_file_values(record), time.time()),
        )

    def delete_file(self, source: str, path: str) -> None:
        self._exec("DELETE FROM files WHERE source=? AND path=?", (source, path))

    # -- documents and chunks ---------------------------------------------------------------
    def documents_of_file(self, source: str, path: str) -> dict[str, str]:
        """doc_id -> content_hash of every document a file produced."""
        rows = self._query(
            "SELECT doc_id, content_hash FROM documents WHERE source=? AND file_path=?",
            (source, path),
        )
        return dict(rows)

    def documents_without_file(self, source: str, seen: set[str]) -> dict[str, str]:
        """doc_id -> content_hash of the source's documents whose file has no record and is
        not among ``seen`` (the paths a walk found): left by a run killed mid-file."""
        rows = self._query(
            "SELECT d.doc_id, d.content_hash, d.file_path FROM documents d WHERE d.source=?"
            " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.source = d.source"
            " AND f.path = d.file_path)",
            (source,),
        )
        return {doc_id: digest for doc_id, digest, path in rows if path not in seen}

    def put_document(
        self, doc_id: str, source: str, file_path: str, document: Document, content_hash: str
    ) -> None:
        blocks = [[b.text, list(b.headings), b.kind] for b in document.blocks]
        self._exec(
            "INSERT OR REPLACE INTO documents(doc_id, source, file_path, uri, title, format, "
            "content_hash, metadata_json, blocks_json, updated) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (
                doc_id,
                source,
                file_path,
                document.uri,
                document.title,
                document.format,
                content_hash,
                json.dumps(document.metadata, default=str),
                json.dumps(blocks),
                time.time(),
            ),
        )

    def load_document(self, doc_id: str) -> Document:
        rows = self._query(
            "SELECT uri, title, format, metadata_json, blocks_json FROM documents WHERE doc_id=?",
            (doc_id,),
        )
        uri, title, fmt, metadata, blocks = rows[0]
        return Document(
            uri=uri,
            title=title,
            format=fmt,
            metadata=json.loads(metadata),
            blocks=[
                Block(text, tuple(headings), kind) for text, headings, kind in json.loads(blocks)
            ],
        )

    def doc_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT doc_id FROM documents ORDER BY doc_id")]

    def doc_ids_after(self, cursor: str, limit: int) -> list[str]:
        """The next ``limit`` document ids after ``cursor`` in id order (a backfill's walk)."""
        rows = self._query(
            "SELECT doc_id FROM documents WHERE doc_id > ? ORDER BY doc_id LIMIT ?",
            (cursor, limit),
        )
        return [row[0] for row in rows]

    def count_documents_after(self, cursor: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM documents WHERE doc_id > ?", (cursor,))[0][0])

    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for batch in _batched(list(doc_ids), 500):
            marks = ",".join("?" * len(batch))
            rows = self._query(
                f"SELECT doc_id, content_hash FROM documents WHERE doc_id IN ({marks})", batch
            )
            out.update((row[0], row[1]) for row in rows)
        return out

    def delete_documents(self, doc_ids: Iterable[str]) -> None:
        for batch in _batched(list(doc_ids), 500):
            marks = ",".join("?" * len(batch))
            self._exec(f"DELETE FROM documents WHERE doc_id IN ({marks})", batch)

    def integrity_problems(self, *, quick: bool = False, limit: int = 20) -> list[str]:
        """SQLite's own check of the file (``quick``: skips index contents); empty when sound."""
        pragma = "quick_check" if quick else "integrity_check"
        found = [str(row[0]) for row in self._query(f"PRAGMA {pragma}({int(limit)})")]
        return [] if found == ["ok"] else found

    def foreign_key_problems(self) -> list[tuple[str, int, str]]:
        """(table, rowid, missing parent table) of every row whose parent row is gone."""
        rows = self._query("PRAGMA foreign_key_check")
        return [(row[0], -1 if row[1] is None else int(row[1]), row[2]) for row in rows]

    def counts(self) -> dict[str, int]:
        tables = ("sources", "files", "documents", "chunks", "embeddings")
        return {t: self._query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}


def store_damage(path: Path, exc: sqlite3.DatabaseError, doing: str) -> StoreDamagedError | None:
    """The error to raise for a damaged store file, or None when ``exc`` is not damage."""
    code = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if code not in _DAMAGE_CODES and not any(
        marker in text for marker in ("malformed", "not a database", "disk I/O error")
    ):
        return None
    return StoreDamagedError(
        f"{path}: {doing}: the store is damaged ({text}). Restore store.sqlite from a backup "
        "(the index files beside it are derived from it); `ragkit doctor` shows what is "
        "affected. Without a backup, ingest the sources again into a new workspace."
    )


def _file_values(record: FileRecord) -> tuple[Any, ...]:
    return (
        record.source,
        record.path,
        record.size,
        record.mtime_ns,
        record.content_hash,
        record.format,
    )


def _batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
