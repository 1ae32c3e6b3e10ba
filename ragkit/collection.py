"""A collection: one physical index for one (encoder fingerprint, chunking fingerprint).

Index files are written per *generation* (``dense.g000007.faiss``): a writer saves generation
N+1 under a new name and then commits ``generation = N+1`` in the same store transaction as the
chunk rows. A crash before the commit leaves an unreferenced file (removed on the next write);
a crash after it leaves the new state complete. Readers always see one whole generation.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ragkit.config import IndexConfig
from ragkit.errors import IndexCorruptError
from ragkit.indexes import DenseIndex, create_dense_index, load_dense_index
from ragkit.store import CollectionRecord, Store

__all__ = ["Collection", "CollectionWriter"]

_GENERATION_FILE = re.compile(r"^dense\.g(\d+)\.faiss$")


class Collection:
    def __init__(self, store: Store, workspace_dir: Path, record: CollectionRecord) -> None:
        self.store = store
        self.record = record
        self.dir = workspace_dir / "collections" / record.name
        self.index_config = IndexConfig(**record.index)

    @property
    def name(self) -> str:
        return self.record.name

    def refresh(self) -> None:
        record = self.store.collection(self.name)
        if record is not None:
            self.record = record

    def dense_path(self, generation: int) -> Path:
        return self.dir / f"dense.g{generation:06d}.faiss"

    def load_dense(self) -> DenseIndex:
        """The committed generation; retried once if a writer replaced it meanwhile."""
        for attempt in range(3):
            generation = self.record.generation
            if generation == 0:
                return create_dense_index(self.record.dim, self.index_config)
            path = self.dense_path(generation)
            if path.exists():
                return load_dense_index(path, self.record.dim, self.index_config)
            if attempt < 2:
                self.refresh()
        raise IndexCorruptError(
            f"collection {self.name!r}: index file {path} is missing; "
            "run `ragkit doctor --repair` to rebuild it from the store"
        )

    def vectors_from_cache(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """Every chunk's id and cached vector; chunks without one are returned to be encoded."""
        rows = self.store.chunk_hashes()
        cached = self.store.cached_vectors(
            [h for _, h, _ in rows], self.record.model_fp, self.record.dim
        )
        ids = [i for i, h, _ in rows if h in cached]
        vectors = np.stack([cached[h] for _, h, _ in rows if h in cached]) if ids else None
        missing = [row for row in rows if row[1] not in cached]
        if vectors is None:
            vectors = np.zeros((0, self.record.dim), dtype=np.float32)
        return np.array(ids, dtype=np.int64), vectors, missing

    def remove_stale_files(self) -> None:
        """Drop generations other than the committed one (only a lock holder may call this)."""
        if not self.dir.exists():
            return
        for path in self.dir.iterdir():
            match = _GENERATION_FILE.match(path.name)
            stale = match and int(match.group(1)) != self.record.generation
            if stale or path.name.startswith(".dense."):
                path.unlink(missing_ok=True)


class CollectionWriter:
    """Applies chunk changes to a collection's index and commits a new generation."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        collection.dir.mkdir(parents=True, exist_ok=True)
        collection.remove_stale_files()
        self.index = collection.load_dense()
        self._needs_rebuild = False
        self._dirty = False

    def apply(self, removed_ids: np.ndarray, new_ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(removed_ids) and not self._needs_rebuild:
            self._needs_rebuild = not self.index.remove(removed_ids)
        if not self._needs_rebuild:
            self.index.add(new_ids, vectors)
        self._dirty = self._dirty or bool(len(removed_ids) or len(new_ids))

    def commit(self) -> None:
        """Call inside the store transaction that wrote the chunk rows."""
        if not self._dirty:
            return
        if self._needs_rebuild:
            ids, vectors, missing = self.collection.vectors_from_cache()
            if missing:
                raise IndexCorruptError(
                    f"collection {self.collection.name!r}: {len(missing)} chunks have no cached "
                    "vector; run `ragkit doctor --repair`"
                )
            self.index.rebuild(ids, vectors)
            self._needs_rebuild = False
        generation = self.collection.record.generation + 1
        self.index.save(self.collection.dense_path(generation))
        self.collection.store.set_collection(self.collection.name, generation=generation)
        self._dirty = False

    def after_commit(self) -> None:
        self.collection.refresh()
        self.collection.remove_stale_files()

    def after_rollback(self) -> None:
        self.collection.refresh()
        self.index = self.collection.load_dense()
        self._needs_rebuild = False
        self._dirty = False
