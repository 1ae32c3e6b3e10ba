"""The chunks table, keyed by chunking fingerprint.

A mixin of :class:`ragkit.store.Store`. Collections chunked the same way (one chunking
fingerprint) share chunk rows; collections chunked differently each have their own rows over
the same documents. Every read a collection makes is scoped to its fingerprint. A store no
writer has upgraded yet (schema < 4) has one set of chunks and no fingerprint column, and is
read unscoped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.documents import Chunk

__all__ = ["ChunkRows"]

_BATCH = 500  # stays under SQLite's limit on bound parameters
_EMBED_TEXT = "CASE WHEN context = '' THEN text ELSE context || char(10) || char(10) || text END"


class ChunkRows:
    if TYPE_CHECKING:  # provided by Store
        _db: sqlite3.Connection
        _lock: Any

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

        def _guard(self, doing: str) -> Any: ...

        @property
        def chunks_scoped(self) -> bool: ...

    def _scope(self, chunking_fp: str | None, column: str = "chunking_fp") -> tuple[str, tuple]:
        """``(" AND <column>=?", (fp,))``, or nothing for all chunks / an old store."""
        if chunking_fp is None or not self.chunks_scoped:
            return "", ()
        return f" AND {column}=?", (chunking_fp,)

    def chunk_ids_of_documents(
        self, doc_ids: Iterable[str], chunking_fp: str | None = None
    ) -> list[int]:
        scope, params = self._scope(chunking_fp)
        out: list[int] = []
        for batch in _batched(list(doc_ids), _BATCH):
            marks = ",".join("?" * len(batch))
            rows = self._query(
                f"SELECT id FROM chunks WHERE doc_id IN ({marks}){scope}", (*batch, *params)
            )
            out.extend(row[0] for row in rows)
        return out

    def chunks_of_documents(
        self, doc_ids: Iterable[str], chunking_fp: str
    ) -> list[tuple[int, str, str, str]]:
        """(id, doc_id, text_hash, embed text) of the documents' chunks under a chunking."""
        scope, params = self._scope(chunking_fp)
        out: list[tuple[int, str, str, str]] = []
        for batch in _batched(list(doc_ids), _BATCH):
            marks = ",".join("?" * len(batch))
            rows = self._query(
                f"SELECT id, doc_id, text_hash, {_EMBED_TEXT} FROM chunks"
                f" WHERE doc_id IN ({marks}){scope} ORDER BY id",
                (*batch, *params),
            )
            out.extend((row[0], row[1], row[2], row[3]) for row in rows)
        return out

    def insert_chunks(self, chunks: Sequence[Chunk], chunking_fp: str = "") -> list[int]:
        """Insert chunks made under ``chunking_fp``; returns their ids (the vector ids)."""
        scoped = self.chunks_scoped
        ids = []
        for chunk in chunks:
            values = (
                chunk.chunk_id,
                chunk.doc_id,
                chunk.ordinal,
                chunk.text,
                chunk.context,
                json.dumps(list(chunk.headings)),
                chunk.text_hash,
            )
            if scoped:
                cursor = self._exec(
                    "INSERT INTO chunks(chunking_fp, chunk_id, doc_id, ordinal, text, context,"
                    " headings_json, text_hash) VALUES(?,?,?,?,?,?,?,?)",
                    (chunking_fp, *values),
                )
            else:
                cursor = self._exec(
                    "INSERT INTO chunks(chunk_id, doc_id, ordinal, text, context, headings_json,"
                    " text_hash) VALUES(?,?,?,?,?,?,?)",
                    values,
                )
            ids.append(int(cursor.lastrowid))
        return ids

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """Chunks joined with their documents, for building hits (ids are unique across
        every chunking)."""
        out: dict[int, sqlite3.Row] = {}
        with self._lock, self._guard("cannot read the store"):
            self._db.row_factory = sqlite3.Row
            try:
                for batch in _batched([int(i) for i in ids], _BATCH):
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

    def chunk_documents(self, ids: Sequence[int]) -> dict[int, str]:
        """Chunk id → document id, without the texts: what grouping hits by document needs
        for the few hundred chunks of each channel's run."""
        out: dict[int, str] = {}
        with self._lock, self._guard("cannot read the store"):
            for batch in _batched(sorted({int(i) for i in ids}), _BATCH):
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT id, doc_id FROM chunks WHERE id IN ({marks})", batch
                ).fetchall()
                out.update({int(row[0]): row[1] for row in rows})
        return out

    def all_chunk_ids(self, chunking_fp: str | None = None) -> np.ndarray:
        scope, params = self._scope(chunking_fp)
        rows = self._query(f"SELECT id FROM chunks WHERE 1{scope} ORDER BY id", params)
        return np.array([row[0] for row in rows], dtype=np.int64)

    def chunk_ids_where(
        self, where_sql: str, params: Sequence[Any], chunking_fp: str | None = None
    ) -> np.ndarray:
        scope, scope_params = self._scope(chunking_fp, "c.chunking_fp")
        rows = self._query(
            "SELECT c.id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
            f" WHERE ({where_sql}){scope}",
            (*params, *scope_params),
        )
        return np.array([row[0] for row in rows], dtype=np.int64)

    def chunk_hashes(self, chunking_fp: str | None = None) -> list[tuple[int, str, str]]:
        """(id, text_hash, embed text) of every chunk, for rebuilding an index."""
        scope, params = self._scope(chunking_fp)
        rows = self._query(
            f"SELECT id, text_hash, {_EMBED_TEXT} FROM chunks WHERE 1{scope} ORDER BY id", params
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def has_chunks(self, chunking_fp: str | None = None) -> bool:
        scope, params = self._scope(chunking_fp)
        return bool(
            self._query(f"SELECT EXISTS(SELECT 1 FROM chunks WHERE 1{scope})", params)[0][0]
        )

    def count_chunks(self, chunking_fp: str | None = None) -> int:
        scope, params = self._scope(chunking_fp)
        return int(self._query(f"SELECT COUNT(*) FROM chunks WHERE 1{scope}", params)[0][0])

    def count_uncached(self, model_fp: str, dim: int, chunking_fp: str | None = None) -> int:
        """Chunks with no usable cached vector for an encoder: an index rebuild needs them all."""
        scope, params = self._scope(chunking_fp, "c.chunking_fp")
        rows = self._query(
            "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e"
            " WHERE e.text_hash = c.text_hash AND e.model_fp = ? AND length(e.vector) = ?)"
            f"{scope}",
            (model_fp, 4 * dim, *params),
        )
        return int(rows[0][0])

    def lead_chunk_ids(self, chunking_fp: str) -> np.ndarray:
        """Each document's first chunk (ordinal 0): the id its document vector is kept under."""
        scope, params = self._scope(chunking_fp)
        rows = self._query(f"SELECT id FROM chunks WHERE ordinal = 0{scope} ORDER BY id", params)
        return np.array([row[0] for row in rows], dtype=np.int64)

    def multi_chunk_share(self, chunking_fp: str) -> float:
        """The share of documents longer than one chunk: those whose document vector is not
        one of their chunk vectors (0.0 for an empty collection)."""
        scope, params = self._scope(chunking_fp)
        rows = self._query(
            "SELECT COUNT(*), COALESCE(SUM(n > 1), 0) FROM"
            f" (SELECT COUNT(*) AS n FROM chunks WHERE 1{scope} GROUP BY doc_id)",
            params,
        )
        documents, longer = rows[0]
        return longer / documents if documents else 0.0

    def lead_rows(
        self, lead_ids: Sequence[int], chunking_fp: str, chunks: int
    ) -> list[tuple[int, str, str, str, str]]:
        """(first chunk's id, document title, text hash, embed text, text) of the first
        ``chunks`` chunks of the documents whose first chunk is each of ``lead_ids``, in
        document and ordinal order: what a document vector's text is made of."""
        scope, params = self._scope(chunking_fp, "c.chunking_fp")
        out: list[tuple[int, str, str, str, str]] = []
        embed = (
            "CASE WHEN c.context = '' THEN c.text"
            " ELSE c.context || char(10) || char(10) || c.text END"
        )
        for batch in _batched(sorted(int(i) for i in lead_ids), _BATCH):
            marks = ",".join("?" * len(batch))
            rows = self._query(
                f"SELECT l.id, d.title, c.text_hash, {embed}, c.text FROM chunks l"
                " JOIN chunks c ON c.doc_id = l.doc_id AND c.chunking_fp = l.chunking_fp"
                " JOIN documents d ON d.doc_id = l.doc_id"
                f" WHERE l.ordinal = 0 AND l.id IN ({marks}) AND c.ordinal < ?{scope}"
                " ORDER BY l.id, c.ordinal",
                (*batch, chunks, *params),
            )
            out.extend((row[0], row[1] or "", row[2], row[3], row[4]) for row in rows)
        return out


def _batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
