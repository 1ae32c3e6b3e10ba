"""The embeddings table: vectors cached per (text hash, encoder fingerprint).

A mixin of :class:`ragkit.store.Store`, kept in its own module because it is the one part of the
store every writer leans on for speed: re-chunking, rebuilding, repairing or migrating a
collection takes vectors from here instead of encoding the text again.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.compute import EncodeEngine, InProcessEngine, part_size
from ragkit.errors import RagkitError

__all__ = ["EmbeddingCache", "encode_into_cache"]

_BATCH = 500  # stays under SQLite's limit on bound parameters


class EmbeddingCache:
    """Cache reads and writes; vectors are stored as float32 bytes, checked against ``dim`` on
    read so a cache entry of another width never reaches an index.

    ``encode_engine`` says where :func:`encode_into_cache` encodes what the cache lacks; it
    lives here, beside the cache every encoding job writes to, so the workspace sets it once
    from ``[compute]`` and ingest, repair and backfill use it without code of their own.
    """

    #: None: in this process
    encode_engine: EncodeEngine | None = None

    if TYPE_CHECKING:  # provided by Store
        _db: sqlite3.Connection

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def transaction(self) -> AbstractContextManager[None]: ...

    @contextlib.contextmanager
    def using_engine(self, engine: EncodeEngine | None) -> Iterator[None]:
        """Encode with ``engine`` inside the block (``--ray`` for one job); None changes
        nothing."""
        if engine is None:
            yield
            return
        previous, self.encode_engine = self.encode_engine, engine
        try:
            yield
        finally:
            self.encode_engine = previous

    def cached_blobs(self, hashes: Sequence[str], model_fp: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), _BATCH):
            batch = unique[start : start + _BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._query(
                "SELECT text_hash, vector FROM embeddings"
                f" WHERE model_fp=? AND text_hash IN ({marks})",
                (model_fp, *batch),
            )
            out.update(rows)
        return out

    def cache_blobs(self, hashes: Sequence[str], model_fp: str, blobs: Sequence[bytes]) -> None:
        rows = [(h, model_fp, b) for h, b in zip(hashes, blobs, strict=True)]
        with self.transaction():  # one fsync per batch, not one per vector
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings(text_hash, model_fp, vector) VALUES(?,?,?)", rows
            )

    def cached_vectors(
        self, hashes: Sequence[str], model_fp: str, dim: int
    ) -> dict[str, np.ndarray]:
        out = {}
        for text_hash, blob in self.cached_blobs(hashes, model_fp).items():
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.shape[0] == dim:
                out[text_hash] = vector
        return out

    def cache_vectors(self, hashes: Sequence[str], model_fp: str, vectors: np.ndarray) -> None:
        blobs = [np.ascontiguousarray(v, dtype=np.float32).tobytes() for v in vectors]
        self.cache_blobs(hashes, model_fp, blobs)


def encode_into_cache(
    encoder: Any,
    cache: EmbeddingCache,
    model_fp: str,
    texts: dict[str, str],
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Encode ``{text hash: text}`` as documents and cache every part as soon as it is done.

    sentence-transformers sorts by length only within one call, so the texts are sorted across
    the whole set first and each call pads little (unsorted windows cost ~15% more encoder time).
    Each part commits its cache rows on its own: a crash after it never re-encodes those texts.
    The cache's ``encode_engine`` encodes the parts (here, or on Ray actors); this loop alone
    caches them, so every engine gets the same crash safety. A part an engine delivers twice
    (a retried task) is cached once.
    """
    from ragkit.encoders.protocol import ReportsProgress

    pending = sorted(texts.items(), key=lambda item: len(item[1]))
    engine = cache.encode_engine or InProcessEngine()
    vectors: dict[str, np.ndarray] = {}
    reporting = encoder.reporting(progress) if isinstance(encoder, ReportsProgress) else None
    with reporting or contextlib.nullcontext():
        for hashes, encoded in engine.encode(encoder, model_fp, pending, part_size(encoder)):
            fresh = [i for i, h in enumerate(hashes) if h not in vectors and h in texts]
            if not fresh:
                continue
            part = [hashes[i] for i in fresh]
            rows = encoded if len(fresh) == len(hashes) else encoded[fresh]
            cache.cache_vectors(part, model_fp, rows)
            vectors.update(zip(part, rows, strict=True))
            if progress is not None:
                progress("chunks", len(part))
    if len(vectors) != len(texts):
        raise RagkitError(
            f"the {engine.name} encode engine returned {len(vectors)} of {len(texts)} vectors; "
            "the ones it returned are cached, so running the job again encodes only the rest"
        )
    return vectors
