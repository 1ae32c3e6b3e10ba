"""One vector per document beside the chunk vectors: the encoder's document embedding of the
document's title and lead (``[index] document_vectors``).

A long page is many chunks, and none of them says what the page is about the way its title
and first paragraphs do. With document hits (``documents=True``) the ranking of these vectors
is fused with each channel's chunks grouped into documents, weighted by the share of documents
longer than one chunk (a one-chunk document's vector is its chunk vector). On by default for a
new collection (:data:`ragkit.collection_spec.DOCUMENT_VECTORS_DEFAULT`).

Like every index, it is derived from the store: a document's vector is kept under the id of its
first chunk (ordinal 0) in the collection's chunking, so a changed document (new chunks, new
ids) or a deleted one (no chunks) drops its old vector by the same id arithmetic as the chunks.
Its text is made from the stored chunks (:func:`lead_text`), its vector comes from the
embedding cache (text hash × encoder fingerprint, as chunk vectors do), encoded before any
store transaction, and the index is a FAISS flat file per generation
(``documents.g<N>.faiss``), written in the commit of the chunks it matches, whatever the
collection's dense backend: a crash leaves the previous generation whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.config import IndexConfig
from ragkit.embedding_cache import encode_into_cache
from ragkit.encoders.fingerprint import hash_text
from ragkit.errors import IndexCorruptError
from ragkit.indexes import DenseIndex, create_dense_index, load_dense_index

if TYPE_CHECKING:
    from ragkit.collection import Collection
    from ragkit.documents import Chunk
    from ragkit.store import Store

__all__ = [
    "DocumentVectorWriter",
    "document_path",
    "encode_batch_leads",
    "encode_stored_leads",
    "lead_text",
    "load_document_index",
    "stored_leads",
]

#: the lead is read from at most this many first chunks of a document
LEAD_CHUNKS = 16
#: the lead's token budget when neither the chunking nor the encoder names one
LEAD_TOKENS = 256
#: characters kept per token of the budget: enough for the encoder to fill its budget with
#: the lead (it truncates the rest), few enough that an edit far below it keeps the vector
CHARS_PER_TOKEN = 8
_FLAT = IndexConfig(backend="faiss", kind="flat")

Part = tuple[str, str, str]  # (text hash, embed text, text) of one chunk, in ordinal order
Progress = Callable[[str, int], None]


def lead_chars(collection: Collection) -> int:
    spec = collection.record.spec
    tokens = spec.chunking.max_tokens or spec.encoder.max_seq_length or LEAD_TOKENS
    return min(tokens, LEAD_TOKENS) * CHARS_PER_TOKEN


def lead_text(title: str, parts: list[Part], chars: int) -> tuple[str, str]:
    """``(text hash, text)`` of a document's vector: its title and the text of its first chunks,
    cut at ``chars``. A document of one chunk reuses that chunk's text (title and headings in
    front, as embedded), so its document vector is its chunk vector, taken from the cache."""
    if len(parts) == 1:
        return parts[0][0], parts[0][1]
    pieces, size = ([title], len(title)) if title else ([], 0)
    for _, _, text in parts:
        if size >= chars:
            break
        pieces.append(text)
        size += len(text) + 2
    text = "\n\n".join(pieces)[:chars]
    return hash_text(text), text


def stored_leads(
    store: Store, collection: Collection, lead_ids: Iterable[int]
) -> dict[int, tuple[str, str]]:
    """``{first chunk id: (text hash, text)}`` from the stored chunks."""
    grouped: dict[int, tuple[str, list[Part]]] = {}
    rows = store.lead_rows(list(lead_ids), collection.chunking_fp, LEAD_CHUNKS)
    for lead_id, title, text_hash, embed, text in rows:
        grouped.setdefault(lead_id, (title, []))[1].append((text_hash, embed, text))
    chars = lead_chars(collection)
    return {i: lead_text(title, parts, chars) for i, (title, parts) in grouped.items()}


def encode_batch_leads(
    store: Store,
    collection: Collection,
    encoder: Any,
    titles: Mapping[str, str],
    chunks: Iterable[Chunk],
    progress: Progress | None = None,
) -> int:
    """Cache the document vectors of an ingest batch's documents (``titles``: doc id → title)
    from their new chunks, before the batch's transaction; returns how many were encoded."""
    parts: dict[str, list[tuple[int, Part]]] = {}
    for chunk in chunks:
        if chunk.doc_id in titles and chunk.ordinal < LEAD_CHUNKS:
            part = (chunk.text_hash, chunk.embed_text, chunk.text)
            parts.setdefault(chunk.doc_id, []).append((chunk.ordinal, part))
    chars = lead_chars(collection)
    texts = dict(
        lead_text(titles[doc_id], [p for _, p in sorted(found)], chars)
        for doc_id, found in parts.items()
    )
    return _encode_uncached(store, collection, encoder, texts, progress)


def encode_stored_leads(
    store: Store, collection: Collection, encoder: Any, progress: Progress | None = None
) -> int:
    """Cache the vector of every stored document that lacks one (a repair, the end of a
    migration's backfill, a collection built from the store); returns how many were encoded."""
    leads = stored_leads(store, collection, store.lead_chunk_ids(collection.chunking_fp))
    return _encode_uncached(store, collection, encoder, dict(leads.values()), progress)


def uncached_leads(store: Store, collection: Collection) -> int:
    """Documents whose vector is not in the cache: a rebuild of the index would lack them."""
    leads = stored_leads(store, collection, store.lead_chunk_ids(collection.chunking_fp))
    hashes = sorted({h for h, _ in leads.values()})
    record = collection.record
    cached = store.cached_vectors(hashes, record.model_fp, record.dim)
    return sum(1 for h, _ in leads.values() if h not in cached)


def _encode_uncached(
    store: Store,
    collection: Collection,
    encoder: Any,
    texts: dict[str, str],
    progress: Progress | None,
) -> int:
    record = collection.record
    cached = store.cached_vectors(list(texts), record.model_fp, record.dim) if texts else {}
    todo = {h: t for h, t in texts.items() if h not in cached}
    if todo:
        encode_into_cache(encoder, store, record.model_fp, todo, progress)
    return len(todo)


def document_path(collection: Collection, generation: int) -> Path:
    return collection.dir / f"documents.g{generation:06d}.faiss"


def load_document_index(collection: Collection) -> DenseIndex:
    """The committed generation's document vectors (empty before the first commit); read
    again from the new generation when a writer replaced this one meanwhile."""
    for attempt in range(3):
        record = collection.record
        if record.generation == 0:
            return _empty(collection)
        path = document_path(collection, record.generation)
        if path.exists() or attempt == 2:
            break
        collection.refresh()
    if not path.exists():
        raise IndexCorruptError(
            f"collection {collection.name!r}: document vector file {path} is missing; run "
            "`ragkit doctor --repair` to rebuild it from the store"
        )
    try:
        return load_dense_index(path, collection.record.dim, _FLAT)
    except Exception as exc:
        raise IndexCorruptError(
            f"document vector file {path} does not load ({type(exc).__name__}: {exc}); run "
            "`ragkit doctor --repair` to rebuild it from the store"
        ) from exc


def _empty(collection: Collection) -> DenseIndex:
    return create_dense_index(
        collection.record.dim, _FLAT, directory=collection.dir, name=collection.name
    )


class DocumentVectorWriter:
    """The document vectors' part of a :class:`~ragkit.collection.CollectionWriter`: at each
    commit, inside the store transaction, the index is brought to the store's documents (the
    vectors of documents gone are removed, those of new ones added from the cache) and saved
    as the same generation as the chunk indexes."""

    def __init__(self, collection: Collection, *, rebuild: bool = False) -> None:
        self.collection = collection
        self.index = _empty(collection) if rebuild else load_document_index(collection)

    @classmethod
    def attach(
        cls, collection: Collection, *, rebuild: bool = False
    ) -> DocumentVectorWriter | None:
        if not collection.record.spec.index.document_vectors:
            return None
        return cls(collection, rebuild=rebuild)

    def out_of_step(self, store: Store) -> bool:
        """Whether the index holds other documents than the store (a commit brings it back)."""
        if store.backfilling(self.collection.name) is not None:
            return False
        held = np.sort(self.index.ids())
        return not np.array_equal(held, store.lead_chunk_ids(self.collection.chunking_fp))

    def commit(self, store: Store, generation: int) -> None:
        """While the collection is a shadow being backfilled, its documents' vectors are
        left for the backfill's last step (which caches them all, then commits them)."""
        if store.backfilling(self.collection.name) is None:
            self._sync(store)
        self.index.save(document_path(self.collection, generation))

    def _sync(self, store: Store) -> None:
        collection = self.collection
        wanted = store.lead_chunk_ids(collection.chunking_fp)
        held = self.index.ids()
        gone = np.setdiff1d(held, wanted)
        if len(gone) and not self.index.remove(gone):
            raise IndexCorruptError(f"collection {collection.name!r}: cannot remove vectors")
        new = np.setdiff1d(wanted, held)
        if not len(new):
            return
        leads = stored_leads(store, collection, new.tolist())
        record = collection.record
        cached = store.cached_vectors([h for h, _ in leads.values()], record.model_fp, record.dim)
        lacking = [i for i, (h, _) in leads.items() if h not in cached]
        if lacking:
            raise IndexCorruptError(
                f"collection {collection.name!r}: {len(lacking)} documents have no cached "
                "document vector; run `ragkit doctor --repair`"
            )
        ids = np.array(sorted(leads), dtype=np.int64)
        self.index.add(ids, np.stack([cached[leads[int(i)][0]] for i in ids]))
