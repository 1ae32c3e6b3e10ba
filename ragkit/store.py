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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.documents import Block, Chunk, Document
from ragkit.embedding_cache import EmbeddingCache
from ragkit.errors import StoreDamagedError, WorkspaceError
from ragkit.index_checksums import IndexChecksums
from ragkit.run_log import RunLog
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


class Store(EmbeddingCache, IndexChecksums, RunLog):
    """Thin typed access to ``store.sqlite``; writes happen inside :meth:`transaction`. The
    embedding cache, the index files' checksums and the job records live in mixins
    (``embedding_cache``, ``index_checksums``, ``run_log``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
                create_tables(self._db)
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{path} was written by a newer ragkit (schema {version}); upgrade ragkit"
            )

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 1)

    def upgrade(self) -> list[int]:
        """Bring an older store's tables up to date (``ragkit.store_schema.UPGRADES``), in one
        transaction. Only a writer calls this, under the writer lock: opening never writes."""
        if self.schema_version >= SCHEMA_VERSION:
            return []
        with self.transaction():
            return upgrade_tables(self._db)

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

    def chunk_ids_of_documents(self, doc_ids: Iterable[str]) -> list[int]:
        out: list[int] = []
        for batch in _batched(list(doc_ids), 500):
            marks = ",".join("?" * len(batch))
            out.extend(
                row[0]
                for row in self._query(f"SELECT id FROM chunks WHERE doc_id IN ({marks})", batch)
            )
        return out

    def delete_documents(self, doc_ids: Iterable[str]) -> None:
        for batch in _batched(list(doc_ids), 500):
            marks = ",".join("?" * len(batch))
            self._exec(f"DELETE FROM documents WHERE doc_id IN ({marks})", batch)

    def insert_chunks(self, chunks: Sequence[Chunk]) -> list[int]:
        ids = []
        for chunk in chunks:
            cursor = self._exec(
                "INSERT INTO chunks(chunk_id, doc_id, ordinal, text, context, headings_json, "
                "text_hash) VALUES(?,?,?,?,?,?,?)",
                (
                    chunk.chunk_id,
                    chunk.doc_id,
                    chunk.ordinal,
                    chunk.text,
                    chunk.context,
                    json.dumps(list(chunk.headings)),
                    chunk.text_hash,
                ),
            )
            ids.append(int(cursor.lastrowid))
        return ids

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """Chunks joined with their documents, for building hits."""
        out: dict[int, sqlite3.Row] = {}
        with self._lock, self._guard("cannot read the store"):
            self._db.row_factory = sqlite3.Row
            try:
                for batch in _batched([int(i) for i in ids], 500):
                    marks = ",".join("?" * len(batch))
                    rows = self._db.execute(
                        "SELECT c.id, c.chunk_id, c.doc_id, c.text, c.context, c.headings_json,"
                        " d.uri, d.title, d.source, d.format, d.metadata_json FROM chunks c"
                        f" JOIN documents d ON d.doc_id = c.doc_id WHERE c.id IN ({marks})",
                        batch,
                    ).fetchall()
                    out.update({row["id"]: row for row in rows})
            finally:
                self._db.row_factory = None
        return out

    def all_chunk_ids(self) -> np.ndarray:
        rows = self._query("SELECT id FROM chunks ORDER BY id")
        return np.array([row[0] for row in rows], dtype=np.int64)

    def chunk_ids_where(self, where_sql: str, params: Sequence[Any]) -> np.ndarray:
        rows = self._query(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id WHERE {where_sql}",
            params,
        )
        return np.array([row[0] for row in rows], dtype=np.int64)

    def chunk_hashes(self) -> list[tuple[int, str, str]]:
        """(id, text_hash, embed text) of every chunk, for rebuilding an index."""
        rows = self._query(
            "SELECT id, text_hash, CASE WHEN context = '' THEN text "
            "ELSE context || char(10) || char(10) || text END FROM chunks ORDER BY id"
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def integrity_problems(self, *, quick: bool = False, limit: int = 20) -> list[str]:
        """SQLite's own check of the file (``quick``: skips index contents); empty when sound."""
        pragma = "quick_check" if quick else "integrity_check"
        found = [str(row[0]) for row in self._query(f"PRAGMA {pragma}({int(limit)})")]
        return [] if found == ["ok"] else found

    def foreign_key_problems(self) -> list[tuple[str, int, str]]:
        """(table, rowid, missing parent table) of every row whose parent row is gone."""
        rows = self._query("PRAGMA foreign_key_check")
        return [(row[0], -1 if row[1] is None else int(row[1]), row[2]) for row in rows]

    def has_chunks(self) -> bool:
        return bool(self._query("SELECT EXISTS(SELECT 1 FROM chunks)")[0][0])

    def counts(self) -> dict[str, int]:
        tables = ("sources", "files", "documents", "chunks", "embeddings")
        return {t: self._query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}

    # -- collections and aliases ------------------------------------------------------------
    def put_collection(self, record: CollectionRecord) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO collections(name, model_fp, chunking_fp, backend, dim, state, generation,"
            " encoder_json, index_json, sparse_fp, sparse_json, created, updated)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.name,
                record.model_fp,
                record.chunking_fp,
                record.backend,
                record.dim,
                record.state,
                record.generation,
                json.dumps(record.encoder, default=str),
                json.dumps(record.index),
                record.sparse_fp,
                json.dumps(record.sparse, default=str),
                now,
                now,
            ),
        )

    def collection(self, name: str) -> CollectionRecord | None:
        rows = self._query(
            "SELECT name, model_fp, chunking_fp, backend, dim, state, generation, encoder_json,"
            " index_json, sparse_fp, sparse_json FROM collections WHERE name=?",
            (name,),
        )
        if not rows:
            return None
        *head, encoder, index, sparse_fp, sparse_json = rows[0]
        return CollectionRecord(
            *head,
            encoder=json.loads(encoder),
            index=json.loads(index),
            sparse_fp=sparse_fp,
            sparse=json.loads(sparse_json),
        )

    def collections(self) -> list[CollectionRecord]:
        names = [row[0] for row in self._query("SELECT name FROM collections ORDER BY created")]
        return [record for name in names if (record := self.collection(name))]

    def set_collection(self, name: str, **fields: Any) -> None:
        allowed = {"state", "generation", "chunking_fp", "sparse_fp", "sparse_json"}
        if not set(fields) <= allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a collection")
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
            self._exec(
                "UPDATE collections SET model_fp=?, encoder_json=?, updated=? WHERE name=?",
                (new_fp, json.dumps(encoder, default=str), time.time(), name),
            )
            # A vector already cached under the new id is the same model's: keep either one.
            self._exec(
                "INSERT OR IGNORE INTO embeddings(text_hash, model_fp, vector)"
                " SELECT text_hash, ?, vector FROM embeddings WHERE model_fp=?",
                (new_fp, old_fp),
            )
            if not self._query("SELECT 1 FROM collections WHERE model_fp=? LIMIT 1", (old_fp,)):
                self._exec("DELETE FROM embeddings WHERE model_fp=?", (old_fp,))

    def set_alias(self, alias: str, collection: str) -> None:
        self._exec(
            "INSERT OR REPLACE INTO aliases(alias, collection) VALUES(?, ?)", (alias, collection)
        )

    def aliases(self) -> dict[str, str]:
        return dict(self._query("SELECT alias, collection FROM aliases ORDER BY alias"))

    def resolve_alias(self, alias: str) -> str | None:
        rows = self._query("SELECT collection FROM aliases WHERE alias=?", (alias,))
        return rows[0][0] if rows else None


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
