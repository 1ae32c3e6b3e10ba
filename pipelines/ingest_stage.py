"""The staging half of an ingest: parsed documents become a batch, a batch becomes a commit.

A document is chunked once per chunking spec among the collections kept in step (collections
chunked alike share the rows), under the per-document and per-file chunk caps; an unchanged
document (same content hash) is skipped. When the batch is full, each collection's vectors come
from its own encoder through the embedding cache and its sparse channel prepares the new chunks,
all before the store transaction of :func:`ragkit.pipelines.ingest_commit.commit_batch`.
The walk that feeds it is :mod:`ragkit.pipelines.ingest`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ragkit.chunking import Chunker, TooManyChunksError, doc_id_for
from ragkit.compute import encodes_ahead, part_size
from ragkit.compute.memory import release_free_memory
from ragkit.connectors import LoadOptions
from ragkit.document_vectors import encode_batch_leads
from ragkit.documents import Chunk, Document
from ragkit.embedding_cache import encode_into_cache
from ragkit.errors import ConnectorError
from ragkit.pipelines.ingest_commit import Batch, Target, commit_batch
from ragkit.pipelines.ingest_report import IngestReport
from ragkit.store import FileRecord, Store

__all__ = ["ChunkedFile", "Staging", "chunk_file", "document_hash"]

ProgressCallback = Callable[[str, int], None]


def document_hash(document: Document) -> str:
    payload = json.dumps(
        [
            document.title,
            document.format,
            document.metadata,
            [list(map(str, (b.text, b.headings, b.kind))) for b in document.blocks],
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class ChunkedFile:
    """A file's documents that need staging, each with its chunks per chunking fingerprint."""

    documents: list[tuple[str, Document, str, dict[str, list[Chunk]]]]
    #: every document id of the file (also the unchanged ones), to tell what it no longer holds
    doc_ids: set[str]
    problems: list[str]

    @property
    def chunk_count(self) -> int:
        return sum(len(c) for _, _, _, chunks in self.documents for c in chunks.values())


def chunk_file(
    chunkers: dict[str, Chunker],
    options: LoadOptions,
    source: str,
    file_path: str,
    documents: list[Document],
    existing: dict[str, str],
) -> ChunkedFile:
    """Chunk the documents of one file that are not in ``existing`` (doc id -> content hash)
    with the same hash, under the chunk caps; needs no store, so a producer thread can run it.
    Raises ConnectorError when the file is over a cap."""
    doc_ids: set[str] = set()
    todo: list[tuple[str, Document, str, dict[str, list[Chunk]]]] = []
    problems: list[str] = []
    cap = options.max_chunks_per_file or None
    room = dict.fromkeys(chunkers, cap)  # chunks the file may still make, per chunking
    for document in documents:
        doc_id = doc_id_for(source, document.uri)
        if doc_id in doc_ids:
            problems.append(f"{file_path}: duplicate document {document.uri!r} skipped")
            continue
        doc_ids.add(doc_id)
        content_hash = document_hash(document)
        if existing.get(doc_id) == content_hash:
            continue
        chunks = {}
        for fp, chunker in chunkers.items():
            chunks[fp] = _chunk_capped(chunker, options, file_path, doc_id, document, room[fp])
            left = room[fp]
            room[fp] = None if left is None else left - len(chunks[fp])
        todo.append((doc_id, document, content_hash, chunks))
    return ChunkedFile(todo, doc_ids, problems)


def _chunk_capped(
    chunker: Chunker,
    options: LoadOptions,
    file_path: str,
    doc_id: str,
    document: Document,
    file_room: int | None,
) -> list[Chunk]:
    """Chunks of one document, at most ``max_chunks_per_document`` and the ``file_room``
    its file has left (None: no file cap). The document cap is what stops one huge
    unbroken text; record files (jsonl/csv exports, BEIR corpora) hold many documents."""
    per_document = options.max_chunks_per_document or None
    caps = [
        (cap, name)
        for cap, name in (
            (per_document, "max_chunks_per_document"),
            (file_room, "max_chunks_per_file"),
        )
        if cap is not None
    ]
    room = min((cap for cap, _ in caps), default=None)
    try:
        return chunker.chunk(doc_id, document, max_chunks=room)
    except TooManyChunksError:
        name = min(caps)[1]
        limit = getattr(options, name)
        unit = "one document would make" if name == "max_chunks_per_document" else "would make"
        raise ConnectorError(
            file_path,
            f"{unit} more than {limit} chunks; raise [ingest] {name} in ragkit.toml or "
            "split the file",
        ) from None


class Staging:
    """The batch being filled for ``targets``, committed every ``commit_every`` chunks."""

    def __init__(
        self,
        store: Store,
        targets: list[Target],
        chunkers: dict[str, Chunker],
        options: LoadOptions,
        report: IngestReport,
        commit_every: int,
        progress: ProgressCallback,
    ) -> None:
        self.store = store
        self.targets = targets
        self.chunkers = chunkers
        self.options = options
        self.report = report
        self.commit_every = max(1, commit_every)
        self.progress = progress
        self.batch = Batch()
        #: per collection name, the vectors of the batch being filled (see encode_ahead)
        self._vectors: dict[str, _BatchVectors] = {}

    def put_file(self, record: FileRecord) -> None:
        """Record a file as read; written in the same commit as its documents (or last)."""
        self.batch.put_files.append(record)

    def forget_file(self, source: str, path: str) -> None:
        """Drop a file's record and every document it held."""
        self.batch.delete_files.append((source, path))
        self.delete_documents(self.store.documents_of_file(source, path))

    def stage_documents(
        self,
        source: str,
        file_path: str,
        documents: list[Document],
        chunked: ChunkedFile | ConnectorError | None = None,
    ) -> None:
        """Stage the file's new and changed documents, or none of them: the file's chunks are
        made first, so one over ``max_chunks_per_document`` (or, when set,
        ``max_chunks_per_file``) fails alone (ConnectorError). ``chunked``: the file chunked
        ahead as if the store held none of its documents (the producer of a pipelined ingest),
        or the cap it hit; used when the store indeed holds none."""
        existing = self.store.documents_of_file(source, file_path)
        if isinstance(chunked, ConnectorError) and not existing:
            raise chunked
        if not isinstance(chunked, ChunkedFile) or existing:
            options = self.options
            chunked = chunk_file(self.chunkers, options, source, file_path, documents, existing)
        self.report.problems.extend(chunked.problems)
        for doc_id, document, content_hash, chunks in chunked.documents:
            if doc_id in existing:
                self.batch.delete_docs.append(doc_id)
                self.report.documents_updated += 1
            else:
                self.report.documents_added += 1
            self._stage_document(doc_id, source, file_path, document, content_hash, chunks)
            # Safe mid-file: the file record is written last, so after a crash the file is read
            # again and the documents committed so far are skipped by their content hash.
            self.maybe_flush()
        self.delete_documents({d: h for d, h in existing.items() if d not in chunked.doc_ids})

    def _stage_document(
        self,
        doc_id: str,
        source: str,
        file_path: str,
        document: Document,
        content_hash: str,
        chunks: dict[str, list[Chunk]],
    ) -> None:
        self.batch.put_docs.append((doc_id, source, file_path, document, content_hash))
        for fp, made in chunks.items():
            self.batch.chunks.setdefault(fp, []).extend(made)

    def delete_documents(self, documents: dict[str, str]) -> None:
        self.report.documents_deleted += len(documents)
        self.batch.delete_docs.extend(documents)

    def maybe_flush(self) -> None:
        if self.batch.size >= self.commit_every:
            self.flush()

    def encode_ahead(self) -> bool:
        """Encode what the batch holds so far that the cache lacks, once that is at least one
        encoder part, before the batch is full; a pipelined ingest calls it while its producer
        has nothing ready, so the encoder does not wait on parsing. The vectors go to the cache
        (committed part by part, as at the flush) and are kept for the batch's commit. An
        engine whose every call starts workers (Ray) is left to encode once per batch."""
        if not encodes_ahead(self.store.encode_engine):
            return False
        encoded = False
        for target in self.targets:
            pending = self._pending(target, self.batch, self._vectors)
            if len(pending.todo) >= part_size(target.encoder):
                self._encode(target, pending)
                encoded = True
        return encoded

    def flush(self) -> None:
        """One store transaction for the batch's rows and a new generation of every target."""
        batch, self.batch = self.batch, Batch()
        pending, self._vectors = self._vectors, {}
        targets = self.targets
        if not batch and not any(t.writer.dirty for t in targets):
            return
        vectors, prepared = {}, {}
        for target in targets:
            chunks = batch.chunks.get(target.chunking_fp, [])
            vectors[target.collection.name] = self._vectors_for(target, chunks, batch, pending)
            if target.writer.documents is not None:
                self._cache_document_vectors(target, batch, chunks)
            if target.channel is not None:
                prepared[target.collection.name] = target.channel.prepare(
                    chunks, self.store, self.progress
                )
        deleted = commit_batch(self.store, targets, list(self.chunkers), batch, vectors, prepared)
        self.report.chunks_added += sum(len(chunks) for chunks in batch.chunks.values())
        self.report.chunks_deleted += deleted
        self.report.commits += 1
        del batch, pending, vectors, prepared
        release_free_memory()  # the batch's encoder and index buffers, freed above

    def _cache_document_vectors(self, target: Target, batch: Batch, chunks: list[Chunk]) -> None:
        """The batch's documents' own vectors (``[index] document_vectors``), cached before
        the commit, which adds them to the document index from the cache."""
        titles = {doc_id: document.title for doc_id, _, _, document, _ in batch.put_docs}
        started = time.perf_counter()
        encoded = encode_batch_leads(self.store, target.collection, target.encoder, titles, chunks)
        if encoded:
            self.report.encode_seconds += time.perf_counter() - started

    def _pending(
        self, target: Target, batch: Batch, vectors: dict[str, _BatchVectors]
    ) -> _BatchVectors:
        """The target's vectors for ``batch`` so far, after looking the chunks added since
        the last call up in the cache."""
        state = vectors.setdefault(target.collection.name, _BatchVectors())
        chunks = batch.chunks.get(target.chunking_fp, [])
        new, state.seen = chunks[state.seen :], len(chunks)
        missing = [c.text_hash for c in new if c.text_hash not in state.known]
        if missing:
            dim = target.encoder.dim
            state.known.update(self.store.cached_vectors(missing, target.model_fp, dim))
        for chunk in new:
            if chunk.text_hash not in state.known:
                state.todo.setdefault(chunk.text_hash, chunk.embed_text)
        return state

    def _encode(self, target: Target, state: _BatchVectors) -> None:
        todo, state.todo = state.todo, {}
        started = time.perf_counter()
        fresh = encode_into_cache(target.encoder, self.store, target.model_fp, todo, self.progress)
        self.report.encode_seconds += time.perf_counter() - started
        self.report.chunks_encoded += len(todo)
        state.known.update(fresh)
        state.encoded.update(fresh)

    def _vectors_for(
        self,
        target: Target,
        chunks: list[Chunk],
        batch: Batch,
        vectors: dict[str, _BatchVectors],
    ) -> np.ndarray:
        if not chunks:
            return np.zeros((0, target.encoder.dim), dtype=np.float32)
        state = self._pending(target, batch, vectors)
        if state.todo:
            self._encode(target, state)
        self.report.chunks_from_cache += sum(1 for c in chunks if c.text_hash not in state.encoded)
        return np.stack([state.known[c.text_hash] for c in chunks])


@dataclass
class _BatchVectors:
    """One target's vectors for the batch being filled: what is known (cached or encoded in
    this batch), what was encoded, what is still to encode, and how many chunks were seen."""

    known: dict[str, np.ndarray] = field(default_factory=dict)
    encoded: set[str] = field(default_factory=set)
    todo: dict[str, str] = field(default_factory=dict)
    seen: int = 0
