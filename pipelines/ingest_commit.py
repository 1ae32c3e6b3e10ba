"""The commit of an ingest batch: store rows and a new index generation of every building
and live collection, in one store transaction (``ragkit.collection.committing``, the commit
protocol every writer job uses): all collections move to their next generation together, or
none does. Called by the staging half of an ingest (:mod:`ragkit.pipelines.ingest_stage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.collection import Collection, CollectionWriter, committing
from ragkit.documents import Chunk, Document
from ragkit.encoders.protocol import Encoder
from ragkit.sparse_channel import SparseChannel
from ragkit.store import FileRecord, Store
from ragkit.workspace import Workspace

__all__ = ["WRITTEN_STATES", "Batch", "Target", "commit_batch", "open_targets"]

#: the states of the collections every write reaches: a retired collection is kept in step
#: until its migration is finalized, so a rollback to it loses nothing
WRITTEN_STATES = ("building", "live", "retired")


@dataclass
class Batch:
    """Changes waiting for one atomic commit."""

    put_files: list[FileRecord] = field(default_factory=list)
    delete_files: list[tuple[str, str]] = field(default_factory=list)
    delete_docs: list[str] = field(default_factory=list)
    put_docs: list[tuple[str, str, str, Document, str]] = field(default_factory=list)
    #: chunking fingerprint -> the new chunks made under it
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.put_files or self.delete_files or self.delete_docs or self.put_docs)

    @property
    def size(self) -> int:
        return max((len(chunks) for chunks in self.chunks.values()), default=0)


@dataclass
class Target:
    """One collection kept in step by this job, with its own parts."""

    collection: Collection
    encoder: Encoder
    channel: SparseChannel | None
    writer: CollectionWriter

    @property
    def chunking_fp(self) -> str:
        return self.collection.chunking_fp

    @property
    def model_fp(self) -> str:
        return self.collection.record.model_fp


def open_targets(workspace: Workspace) -> list[Target]:
    """Every building, live and retired collection, each with its encoder, channel and writer."""
    targets = []
    for collection in workspace.collections():
        if collection.state not in WRITTEN_STATES:
            continue
        channel = workspace.sparse_channel_for(collection)
        targets.append(
            Target(
                collection,
                workspace.encoder_for(collection),
                channel,
                CollectionWriter(collection, channel),
            )
        )
    return targets


def commit_batch(
    store: Store,
    targets: list[Target],
    chunkings: list[str],
    batch: Batch,
    vectors: dict[str, np.ndarray],
    prepared: dict[str, Any],
) -> int:
    """Commit ``batch`` and every target's index changes; returns the chunks deleted.
    ``vectors``/``prepared``: each target's (by collection name) for the chunks of its
    chunking, made before the transaction (encoding never holds the store's write lock)."""
    with committing(store, [target.writer for target in targets]):
        removed = {
            fp: np.array(store.chunk_ids_of_documents(batch.delete_docs, fp), np.int64)
            for fp in chunkings
        }
        store.delete_documents(batch.delete_docs)
        for doc_id, source, file_path, document, content_hash in batch.put_docs:
            store.put_document(doc_id, source, file_path, document, content_hash)
        new_ids = {
            fp: np.array(store.insert_chunks(batch.chunks.get(fp, []), fp), np.int64)
            for fp in chunkings
        }
        for record in batch.put_files:
            store.put_file(record)
        for source, path in batch.delete_files:
            store.delete_file(source, path)
        for target in targets:
            name, fp = target.collection.name, target.chunking_fp
            target.writer.apply(removed[fp], new_ids[fp], vectors[name], prepared.get(name))
    return sum(len(ids) for ids in removed.values())
