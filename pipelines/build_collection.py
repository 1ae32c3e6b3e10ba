"""Build a new collection from the stored documents: the writer job behind
``Workspace.create_collection``.

No file is parsed again: the stored blocks are re-chunked under the new chunking spec (or the
rows of a collection chunked the same way are shared), vectors come from the embedding cache
and only the texts it lacks are encoded, outside any transaction and cached as they go. The
collection row, its chunk rows and its first index generation are then committed in one store
transaction, so a crash leaves no half-built collection. From then on every ingest, delete and
repair keeps it in step (it is ``building`` or ``live``).

Kept small on purpose: resumable backfill for large corpora, gates and cutover belong to
the migration job, which builds on this.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ragkit.collection import Collection, CollectionWriter
from ragkit.collection_parts import chunker_for
from ragkit.collection_spec import STATES
from ragkit.document_vectors import encode_batch_leads, encode_stored_leads
from ragkit.embedding_cache import encode_into_cache
from ragkit.errors import ConfigError, WorkspaceError
from ragkit.pipelines._runner import job
from ragkit.workspace import Workspace

if TYPE_CHECKING:
    from ragkit.config import ChunkingConfig, EncoderConfig, IndexConfig, SparseConfig
    from ragkit.documents import Chunk
    from ragkit.encoders.protocol import Encoder

__all__ = ["build_collection"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def build_collection(
    workspace: Workspace,
    name: str,
    *,
    encoder: Encoder | EncoderConfig | None = None,
    chunking: ChunkingConfig | None = None,
    index: IndexConfig | None = None,
    sparse: SparseConfig | None = None,
    state: str = "building",
    wait: float = 0.0,
) -> Collection:
    if not _NAME.match(name):
        raise ConfigError(
            f"collection name {name!r}: use letters, digits, '.', '_' and '-' (64 at most)"
        )
    if state not in STATES[:2]:
        raise ConfigError(f"a new collection is building or live, not {state!r}")
    store = workspace.store
    params = {"name": name, "state": state}
    with job(workspace, "create-collection", params, wait=wait) as run:
        if store.collection(name) is not None:
            raise WorkspaceError(f"{workspace.root}: a collection {name!r} exists already")
        record = workspace.new_collection_record(
            name, encoder=encoder, chunking=chunking, index=index, sparse=sparse, state=state
        )
        collection = Collection(store, workspace.root, record)
        fp = collection.chunking_fp
        loaded = workspace.encoder_for(collection)
        shared = store.has_chunks(fp)
        chunks, titles = ([], {}) if shared else _chunk_stored(workspace, loaded, chunking)
        if shared:
            rows = store.chunk_hashes(fp)
            texts = {text_hash: text for _, text_hash, text in rows}
        else:
            texts = {c.text_hash: c.embed_text for c in chunks}
        cached = store.cached_vectors(list(texts), record.model_fp, record.dim)
        todo = {h: t for h, t in texts.items() if h not in cached}
        cached.update(encode_into_cache(loaded, store, record.model_fp, todo))
        if record.spec.index.document_vectors:
            if shared:
                encode_stored_leads(store, collection, loaded)
            else:
                encode_batch_leads(store, collection, loaded, titles, chunks)
        channel = workspace.sparse_channel_for(collection)
        prepared = None
        if channel is not None and not shared:
            prepared = channel.prepare(chunks, store, lambda event, n: None)
        elif channel is not None:
            channel.warm(store, lambda event, n: None, fp)
        writer = CollectionWriter(collection, channel)
        with writer.committing():
            store.put_collection(record)
            if shared:
                ids = np.array([row[0] for row in rows], dtype=np.int64)
                hashes = [row[1] for row in rows]
            else:
                ids = np.array(store.insert_chunks(chunks, fp), dtype=np.int64)
                hashes = [c.text_hash for c in chunks]
            vectors = _stack([cached[h] for h in hashes], record.dim)
            writer.apply(np.zeros(0, dtype=np.int64), ids, vectors, prepared)
        run.outcome(
            True,
            {"collection": name, "chunks": len(ids), "encoded": len(todo), "shared": shared},
        )
    return collection


def _chunk_stored(
    workspace: Workspace, encoder: Encoder, chunking: ChunkingConfig | None
) -> tuple[list[Chunk], dict[str, str]]:
    """Every stored document chunked under the new spec, from its stored blocks; and each
    document's title (for its document vector)."""
    chunker = chunker_for(encoder, chunking or workspace.config.chunking)
    chunks: list[Chunk] = []
    titles: dict[str, str] = {}
    for doc_id in workspace.store.doc_ids():
        document = workspace.store.load_document(doc_id)
        titles[doc_id] = document.title
        chunks.extend(chunker.chunk(doc_id, document))
    return chunks, titles


def _stack(vectors: list[np.ndarray], dim: int) -> np.ndarray:
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack(vectors).astype(np.float32, copy=False)
