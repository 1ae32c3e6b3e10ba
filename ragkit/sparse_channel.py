"""The sparse channel of a collection: BM25 (bm25s) or SPLADE, beside the dense index.

Both live in the collection's folder under the same generation number as the dense index and
are committed in the same store transaction, so ingest, update and delete touch both or neither.
SPLADE vectors are cached in the store like dense ones (keyed by text hash × model
fingerprint). BM25 needs corpus-wide statistics, but its index keeps each chunk's term counts
(saved in its file too), so a commit tokenizes only the new chunks, in ``prepare``, and the
scores are recomputed from the counts; only switching channels or an index file from before
counts were kept makes it read and tokenize every stored chunk text again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragkit.config import SparseConfig
from ragkit.documents import Chunk
from ragkit.encoders.fingerprint import hash_text
from ragkit.errors import IndexCorruptError
from ragkit.registry import Registry
from ragkit.store import Store

__all__ = [
    "SPARSE_CHANNELS",
    "ExportsSparseVectors",
    "SparseChannel",
    "make_sparse_channel",
    "register_sparse_channel",
]

ProgressCallback = Callable[[str, int], None]


class SparseChannel(Protocol):
    kind: str
    suffix: str

    @property
    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def empty(self) -> Any: ...

    def load(self, path: Path) -> Any: ...

    def prepare(self, chunks: Sequence[Chunk], store: Store, progress: ProgressCallback) -> Any:
        """Outside the store transaction: whatever is slow (encoding), cached as it goes."""
        ...

    def apply(self, index: Any, removed: np.ndarray, new_ids: np.ndarray, prepared: Any) -> bool:
        """Inside the transaction; False when the index must be rebuilt from the store."""
        ...

    def rebuild(self, index: Any, store: Store, chunking_fp: str | None = None) -> None:
        """From the store's chunks of ``chunking_fp`` (the collection's)."""
        ...

    def warm(
        self, store: Store, progress: ProgressCallback, chunking_fp: str | None = None
    ) -> None:
        """Before a rebuild, outside any transaction: cache what the rebuild will need, so a
        long encode neither holds the store's write lock nor is lost to a crash."""
        ...

    def search(
        self, index: Any, texts: Sequence[str], k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class ExportsSparseVectors(Protocol):
    """A channel whose document and query vectors another engine can hold and search: what
    ``[index] qdrant_sparse`` writes into a Qdrant collection as its sparse named vector."""

    #: every document's vector changes when the corpus does (BM25's idf and average length)
    corpus_wide: bool

    def document_vectors(self, index: Any, ids: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """(ids, CSR rows) of the documents among ``ids`` (None: all) that ``index`` holds."""
        ...

    def query_vectors(self, index: Any, texts: Sequence[str]) -> Any:
        """The queries in the same column space, as CSR rows."""
        ...


#: channel name -> ``SparseConfig -> SparseChannel``; filled by the decorator below.
SPARSE_CHANNELS: Registry[Callable[[SparseConfig], SparseChannel]] = Registry(
    "sparse channel", "sparse.model"
)
#: the channel a ``[sparse] model`` that names no channel is given: a SPLADE model name or path
MODEL_CHANNEL = "splade"
_OFF = ("", "none", "off")


def register_sparse_channel(name: str) -> Callable[[Any], Any]:
    """Decorator over a channel class (or ``config -> channel`` function)."""
    return SPARSE_CHANNELS.register(name)


def make_sparse_channel(config: SparseConfig) -> SparseChannel | None:
    """The channel ``[sparse] model`` names, or None when switched off; a name that is no
    registered channel is a SPLADE model (a hub name or a local folder)."""
    name = config.model.strip().lower()
    if name in _OFF:
        return None
    return SPARSE_CHANNELS.get(name if name in SPARSE_CHANNELS else MODEL_CHANNEL)(config)


@register_sparse_channel("bm25")
class Bm25Channel:
    kind = "bm25"
    suffix = "bm25"
    corpus_wide = True

    def __init__(self, config: SparseConfig | None = None) -> None:
        """BM25 has no settings of its own; ``config`` is taken for a uniform constructor."""

    @property
    def fingerprint(self) -> str:
        return hash_text(json.dumps(self.describe(), sort_keys=True))

    def describe(self) -> dict[str, Any]:
        return {"kind": "bm25", "stemmer": "english", "stopwords": "en", "version": 1}

    def empty(self) -> Any:
        from ragkit.indexes.bm25_index import BM25Index

        return BM25Index()

    def load(self, path: Path) -> Any:
        from ragkit.indexes.bm25_index import BM25Index

        return BM25Index.load(path)

    def prepare(self, chunks: Sequence[Chunk], store: Store, progress: ProgressCallback) -> Any:
        """Tokenize the new chunks (the slow part of BM25) before the transaction."""
        from ragkit.indexes.bm25_index import count_terms

        return count_terms([chunk.embed_text for chunk in chunks])

    def apply(self, index: Any, removed: np.ndarray, new_ids: np.ndarray, prepared: Any) -> bool:
        """Update the term counts in place; False (rebuild from the store) when the index has
        no counts (a version-1 file) or the new chunks were not prepared."""
        if not (len(removed) or len(new_ids)):
            return True
        if not index.updatable or (len(new_ids) and prepared is None):
            return False
        index.remove(removed)
        index.add(new_ids, prepared)
        return True

    def rebuild(self, index: Any, store: Store, chunking_fp: str | None = None) -> None:
        rows = store.chunk_hashes(chunking_fp)
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        index.rebuild(ids, [row[2] for row in rows])

    def warm(
        self, store: Store, progress: ProgressCallback, chunking_fp: str | None = None
    ) -> None:
        return None

    def search(
        self, index: Any, texts: Sequence[str], k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return index.search_texts(list(texts), k, allowed_ids=allowed_ids)

    def document_vectors(self, index: Any, ids: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """Always every document: one more chunk changes every BM25 weight."""
        return index.documents()

    def query_vectors(self, index: Any, texts: Sequence[str]) -> Any:
        return index.query_terms(list(texts))


@register_sparse_channel(MODEL_CHANNEL)
class SpladeChannel:
    kind = "splade"
    suffix = "splade.npz"
    corpus_wide = False

    def __init__(self, config: SparseConfig) -> None:
        self.config = config

    @cached_property
    def encoder(self) -> Any:
        from ragkit.encoders.sparse import SpladeEncoder

        name = "default" if self.config.model.lower() == "splade" else self.config.model
        return SpladeEncoder.load(
            name,
            device=self.config.device,
            batch_size=self.config.batch_size,
            max_seq_length=self.config.max_seq_length,
        )

    @property
    def fingerprint(self) -> str:
        return str(self.encoder.fingerprint["id"])

    def describe(self) -> dict[str, Any]:
        return {**self.encoder.fingerprint, "kind": "splade", "name": self.config.model}

    def empty(self) -> Any:
        from ragkit.indexes.sparse_index import SparseIndex

        return SparseIndex(self.encoder.vocab_size)

    def load(self, path: Path) -> Any:
        from ragkit.indexes.sparse_index import SparseIndex

        return SparseIndex.load(path)

    def prepare(self, chunks: Sequence[Chunk], store: Store, progress: ProgressCallback) -> Any:
        return self._vectors(
            [c.text_hash for c in chunks], {c.text_hash: c.embed_text for c in chunks}, store
        )

    def warm(
        self, store: Store, progress: ProgressCallback, chunking_fp: str | None = None
    ) -> None:
        rows = store.chunk_hashes(chunking_fp)
        self._vectors([row[1] for row in rows], {row[1]: row[2] for row in rows}, store, progress)

    def _vectors(
        self,
        hashes: list[str],
        texts: dict[str, str],
        store: Store,
        progress: ProgressCallback | None = None,
    ) -> Any:
        from scipy import sparse

        from ragkit.encoders.sparse import sparse_from_bytes, sparse_to_bytes

        vocab = self.encoder.vocab_size
        if not hashes:
            return sparse.csr_matrix((0, vocab), dtype=np.float32)
        cached = store.cached_blobs(hashes, self.fingerprint)
        todo = [h for h in dict.fromkeys(hashes) if h not in cached]
        for start in range(0, len(todo), 512):
            part = todo[start : start + 512]
            matrix = self.encoder.encode_documents([texts[h] for h in part])
            blobs = [sparse_to_bytes(matrix[i]) for i in range(matrix.shape[0])]
            store.cache_blobs(part, self.fingerprint, blobs)
            cached.update(zip(part, blobs, strict=True))
            if progress is not None:
                progress("sparse_chunks", len(part))
        return sparse.vstack([sparse_from_bytes(cached[h], vocab) for h in hashes], format="csr")

    def apply(self, index: Any, removed: np.ndarray, new_ids: np.ndarray, prepared: Any) -> bool:
        if len(removed) and not index.remove(removed):
            return False
        if len(new_ids):
            index.add(new_ids, prepared)
        return True

    def rebuild(self, index: Any, store: Store, chunking_fp: str | None = None) -> None:
        rows = store.chunk_hashes(chunking_fp)
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        matrix = self._vectors([row[1] for row in rows], {row[1]: row[2] for row in rows}, store)
        index.rebuild(ids, matrix)

    def search(
        self, index: Any, texts: Sequence[str], k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return index.search(self.encoder.encode_queries(list(texts)), k, allowed_ids=allowed_ids)

    def document_vectors(self, index: Any, ids: np.ndarray | None) -> tuple[np.ndarray, Any]:
        return index.documents(ids)

    def query_vectors(self, index: Any, texts: Sequence[str]) -> Any:
        return self.encoder.encode_queries(list(texts))


def sparse_path(directory: Path, channel: SparseChannel, generation: int) -> Path:
    return directory / f"sparse.g{generation:06d}.{channel.suffix}"


def load_sparse(directory: Path, channel: SparseChannel, generation: int) -> Any:
    if generation == 0:
        return channel.empty()
    path = sparse_path(directory, channel, generation)
    if not path.exists():
        raise IndexCorruptError(
            f"{path}: the sparse index of this generation is missing; "
            "run `ragkit doctor --repair` to rebuild it from the store"
        )
    return channel.load(path)
