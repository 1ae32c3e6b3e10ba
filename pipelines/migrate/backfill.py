"""The shadow's backfill: every stored document's chunks into the new collection, in batches,
resumable, while ingests go on.

The backfill walks the documents in id order from the migration's cursor. For each batch it
**reads and encodes without the writer lock** (:meth:`Job.unlocked`): the chunks a document has
under the shadow's chunking (shared rows), or the document chunked the new way from its stored
blocks; the vectors the embedding cache lacks are encoded and cached part by part. Then, **under
the lock, in one store transaction**, it re-reads what an ingest may have changed meanwhile and
adds only what still holds — chunks still in the store and not yet in the shadow, documents
whose content hash is unchanged and that no ingest has chunked the new way since — commits the
shadow's next generation and moves the cursor. So:

- a document deleted during the backfill never reaches the shadow (an ingest's delete removes
  its chunks from every collection, and the batch skips chunks that are gone);
- an update is never lost: the ingest that made it wrote the new chunks to the shadow too (a
  building collection is one of its targets), and the batch skips the stale version;
- a kill -9 loses at most the batch in flight, whose vectors are already cached: ``ragkit
  migrate resume`` (or ``start`` again) redoes that batch from the committed cursor and encodes
  nothing twice; chunk ids come from the store's counter in commit order, so a resumed shadow
  equals an uninterrupted one.

When the cursor has passed the last document, a final sweep adds any store chunk the shadow
still lacks, and the migration becomes ``ready``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.chunking import Chunker
from ragkit.collection import Collection, CollectionWriter
from ragkit.document_vectors import encode_stored_leads
from ragkit.documents import Chunk
from ragkit.embedding_cache import encode_into_cache
from ragkit.errors import WorkspaceError
from ragkit.indexes import close_index
from ragkit.indexes.base import Closeable
from ragkit.pipelines._runner import Job
from ragkit.store_migrations import MigrationRecord
from ragkit.workspace import Workspace

__all__ = ["Backfill"]

ProgressCallback = Any


@dataclass
class _Batch:
    last_doc: str
    documents: int
    #: (id, text_hash) of chunks the store already has under the shadow's chunking
    existing: list[tuple[int, str]] = field(default_factory=list)
    existing_docs: list[str] = field(default_factory=list)
    #: doc_id -> (content hash when chunked, its chunks under the new chunking)
    chunked: dict[str, tuple[str, list[Chunk]]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    encoded: int = 0
    encode_seconds: float = 0.0


class Backfill:
    def __init__(
        self,
        workspace: Workspace,
        migration: MigrationRecord,
        run: Job,
        *,
        batch_chunks: int = 2048,
        progress: ProgressCallback | None = None,
        max_batches: int | None = None,
    ) -> None:
        self.ws = workspace
        self.store = workspace.store
        self.migration = migration
        self.run = run
        self.batch_chunks = max(1, batch_chunks)
        self.progress = progress or (lambda event, n: None)
        self.max_batches = max_batches
        record = self.store.collection(migration.target)
        if record is None:
            raise WorkspaceError(
                f"migration #{migration.id}: its shadow collection {migration.target!r} is gone; "
                "`ragkit migrate abort` closes the migration"
            )
        self.collection = Collection(self.store, workspace.root, record)
        self.encoder = workspace.encoder_for(self.collection)
        self.channel = workspace.sparse_channel_for(self.collection)
        self.fp = self.collection.chunking_fp
        self._chunker: Chunker | None = None
        self.writer: CollectionWriter | None = None
        self.stats: dict[str, Any] = dict(migration.stats)
        for key in ("documents", "chunks", "encoded", "from_cache", "batches"):
            self.stats.setdefault(key, 0)
        self.stats.setdefault("encode_seconds", 0.0)

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = self.ws.chunker_for(self.collection)
        return self._chunker

    # -- the loop -----------------------------------------------------------------------------
    def run_all(self) -> dict[str, Any]:
        """Backfill until the cursor has passed the last document (or ``max_batches``);
        returns the migration's counts. The state becomes ``ready`` when done."""
        cursor = self.migration.cursor
        self.progress("documents_total", self.store.count_documents_after(""))
        done = self.store.counts()["documents"] - self.store.count_documents_after(cursor)
        self.progress("documents", done)
        batches = 0
        started = time.perf_counter()
        try:
            while self.max_batches is None or batches < self.max_batches:
                if self.writer is not None and isinstance(self.writer.index, Closeable):
                    # an embedded Qdrant folder admits one process: let an ingest open it
                    close_index(self.writer.index)
                    self.writer = None
                with self.run.unlocked():
                    batch = self._prepare(cursor)
                    if batch is None:
                        self._cache_document_vectors()
                if batch is None:
                    self._finish()
                    break
                self._commit(batch)
                cursor = batch.last_doc
                batches += 1
                self.progress("documents", batch.documents)
        finally:
            if self.writer is not None:
                close_index(self.writer.index)
        self.stats["seconds"] = self.stats.get("seconds", 0.0) + time.perf_counter() - started
        return self.stats

    def _prepare(self, cursor: str) -> _Batch | None:
        """The next batch read and encoded, without the writer lock (nothing here writes but
        the embedding cache, whose rows are keyed by content and commit part by part)."""
        store = self.store
        # The first commit builds the sparse index from every stored chunk of the chunking
        # (shared rows): encode what a SPLADE channel lacks here, unlocked.
        first = self.writer is None or self.writer.sparse_needs_rebuild
        if first and self.channel is not None and store.has_chunks(self.fp):
            self.channel.warm(store, self.progress, self.fp)
        doc_ids = store.doc_ids_after(cursor, max(16, self.batch_chunks))
        if not doc_ids:
            return None
        rows: dict[str, list[tuple[int, str, str]]] = {}
        for chunk_id, doc_id, text_hash, text in store.chunks_of_documents(doc_ids, self.fp):
            rows.setdefault(doc_id, []).append((chunk_id, text_hash, text))
        hashes = store.document_hashes(doc_ids)
        batch = _Batch(last_doc=doc_ids[-1], documents=0)
        texts: dict[str, str] = {}
        size = 0
        for doc_id in doc_ids:
            if doc_id not in hashes:
                continue  # deleted since the id list was read
            if doc_id in rows:
                for chunk_id, text_hash, text in rows[doc_id]:
                    batch.existing.append((chunk_id, text_hash))
                    texts[text_hash] = text
                batch.existing_docs.append(doc_id)
                size += len(rows[doc_id])
            else:
                try:
                    document = store.load_document(doc_id)
                except IndexError:
                    continue  # deleted meanwhile
                chunks = self.chunker.chunk(doc_id, document)
                batch.chunked[doc_id] = (hashes[doc_id], chunks)
                texts.update((c.text_hash, c.embed_text) for c in chunks)
                size += len(chunks)
            batch.documents += 1
            batch.last_doc = doc_id
            if size >= self.batch_chunks:
                break
        model_fp, dim = self.collection.record.model_fp, self.collection.record.dim
        cached = store.cached_vectors(list(texts), model_fp, dim) if texts else {}
        todo = {h: t for h, t in texts.items() if h not in cached}
        if todo:
            started = time.perf_counter()
            cached.update(encode_into_cache(self.encoder, store, model_fp, todo, self.progress))
            batch.encode_seconds = time.perf_counter() - started
        batch.vectors, batch.encoded = cached, len(todo)
        new_chunks = [c for _, chunks in batch.chunked.values() for c in chunks]
        if new_chunks and self.channel is not None:
            self.channel.prepare(new_chunks, store, self.progress)  # warms a SPLADE cache
        return batch

    def _writer(self) -> CollectionWriter:
        """The shadow's writer at its committed generation: reopened when another writer (an
        ingest while the lock was let go) committed one since."""
        self.collection.refresh()
        writer = self.writer
        if writer is not None and writer.collection.record.generation == (
            self.collection.record.generation
        ):
            return writer
        if writer is not None:
            close_index(writer.index)
        self.writer = CollectionWriter(self.collection, self.channel)
        return self.writer

    def _check_open(self) -> None:
        migration = self.store.migration(self.migration.id)
        if migration is None or migration.state != "backfilling":
            state = migration.state if migration else "gone"
            raise WorkspaceError(f"migration #{self.migration.id} is {state}: backfill stopped")

    def _commit(self, batch: _Batch) -> None:
        """Under the lock: add what still holds, one transaction with the cursor."""
        store = self.store
        self._check_open()
        writer = self._writer()
        with writer.committing():
            present: set[int] = set()
            still: set[int] = set()
            if batch.existing:
                present = set(writer.index.ids().tolist())
                rows = store.chunks_of_documents(batch.existing_docs, self.fp)
                still = {row[0] for row in rows}
            add = [(i, h) for i, h in batch.existing if i in still and i not in present]
            if add:
                ids = np.array([i for i, _ in add], dtype=np.int64)
                vectors = np.stack([batch.vectors[h] for _, h in add])
                writer.apply(np.zeros(0, np.int64), ids, vectors, sparse=False)
            current = store.document_hashes(list(batch.chunked))
            chunked_now = {
                row[1] for row in store.chunks_of_documents(list(batch.chunked), self.fp)
            }
            kept = [
                c
                for doc_id, (content_hash, chunks) in batch.chunked.items()
                if current.get(doc_id) == content_hash and doc_id not in chunked_now
                for c in chunks
            ]
            if kept:
                new_ids = np.array(store.insert_chunks(kept, self.fp), dtype=np.int64)
                vectors = np.stack([batch.vectors[c.text_hash] for c in kept])
                prepared = None
                if self.channel is not None:
                    prepared = self.channel.prepare(kept, store, self.progress)
                writer.apply(np.zeros(0, np.int64), new_ids, vectors, prepared)
            added = len(add) + len(kept)
            stats = self.stats
            stats["documents"] += batch.documents
            stats["chunks"] += added
            stats["encoded"] += batch.encoded
            stats["from_cache"] += max(0, len(batch.vectors) - batch.encoded)
            stats["encode_seconds"] += batch.encode_seconds
            stats["batches"] += 1
            # Also when nothing was new for the shadow (an ingest got there first): the
            # cursor moves in this same transaction.
            store.update_migration(self.migration.id, cursor=batch.last_doc, stats=stats)

    def _cache_document_vectors(self) -> None:
        """A shadow with ``[index] document_vectors`` gets them at the end of its backfill:
        every stored document's vector is cached here (unlocked, then once more under the
        lock for documents added meanwhile), and the last commit, the one that makes the
        migration ``ready``, adds them all to its document index."""
        if not self.collection.record.spec.index.document_vectors:
            return
        encoded = encode_stored_leads(self.store, self.collection, self.encoder)
        self.stats["document_vectors_encoded"] = (
            self.stats.get("document_vectors_encoded", 0) + encoded
        )

    def _finish(self) -> None:
        """The cursor is past the last document: add any chunk the shadow still lacks (a
        document an ingest re-chunked behind the cursor is already there; this is the net),
        then mark the migration ``ready``. Runs under the lock."""
        store = self.store
        self._check_open()
        writer = self._writer()
        store_ids = store.all_chunk_ids(self.fp)
        missing = np.setdiff1d(store_ids, writer.index.ids())
        if len(missing):
            wanted = set(missing.tolist())
            rows = [(i, h, t) for i, h, t in store.chunk_hashes(self.fp) if i in wanted]
            model_fp, dim = self.collection.record.model_fp, self.collection.record.dim
            cached = store.cached_vectors([h for _, h, _ in rows], model_fp, dim)
            todo = {h: t for _, h, t in rows if h not in cached}
            cached.update(encode_into_cache(self.encoder, store, model_fp, todo, self.progress))
            self.stats["encoded"] += len(todo)
            writer = self._writer()
        if writer.documents is not None:
            self._cache_document_vectors()  # the net: documents an ingest added meanwhile
            writer = self._writer()
        with writer.committing():
            if len(missing):
                ids = np.array([i for i, _, _ in rows], dtype=np.int64)
                vectors = np.stack([cached[h] for _, h, _ in rows])
                writer.apply(np.zeros(0, np.int64), ids, vectors, sparse=False)
                self.stats["chunks"] += len(rows)
            self.stats["swept"] = len(missing)
            store.update_migration(self.migration.id, state="ready", stats=self.stats)
