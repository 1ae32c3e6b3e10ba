"""The query path of a workspace: alias → collection → its own encoder, sparse channel and
indexes → (for document hits: each channel's chunks grouped into documents) → fusion → rerank.

Kept apart from :mod:`ragkit.workspace` so that the workspace stays about its parts and jobs,
while everything a query touches (and caches between queries) lives here. The Searcher takes a
:class:`~ragkit.collection_parts.CollectionSource` (root, store, config, the collection an
alias names, each collection's encoder and sparse channel), not the workspace: a workspace
owns one Searcher over itself, and its ``query``/``query_many``/``channel_runs`` delegate to it.

A query resolves its alias once and then works only with that collection: an alias swap in
the middle of a query (one store transaction) changes the next query, never half of this one.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ragkit.document_vectors import load_document_index
from ragkit.documents import Hit
from ragkit.errors import (
    ConfigError,
    DegradedSearchWarning,
    IndexCorruptError,
    WorkspaceError,
)
from ragkit.indexes.base import HoldsSparseVectors
from ragkit.retrieval.filters import check_filter_keys, filters_sql, parse_filters
from ragkit.retrieval.fusion import fuse
from ragkit.retrieval.grouping import by_document, document_scoring
from ragkit.retrieval.migration_queries import QueryEncoding
from ragkit.sparse_channel import ExportsSparseVectors

if TYPE_CHECKING:
    from ragkit.collection import Collection
    from ragkit.collection_parts import CollectionSource
    from ragkit.config import FusionConfig
    from ragkit.indexes import DenseIndex

__all__ = ["Searcher"]

Where = str | list[str] | dict[str, Any] | None
#: chunks searched per document asked for when hits are grouped into documents
CHUNKS_PER_DOCUMENT = 3


class Searcher:
    """Answers queries over one source's collections and keeps what is costly to load between
    them: the indexes of each collection's committed generation and the cross-encoders by name."""

    def __init__(self, source: CollectionSource) -> None:
        self.source = source
        self._readers: dict[str, tuple[int, DenseIndex, Any, IndexCorruptError | None]] = {}
        self._rerankers: dict[str, Any] = {}
        #: document vectors per collection: (generation, index, share of multi-chunk documents)
        self._documents: dict[str, tuple[int, DenseIndex | None, float]] = {}
        self.encoding = QueryEncoding(source)  # a migration's adapter and warm-up

    def query_many(
        self,
        texts: list[str],
        *,
        k: int,
        where: Where,
        mode: str | None,
        rerank: bool | str | None,
        alias: str,
        query_vectors: np.ndarray | None,
        documents: bool | str = False,
    ) -> list[list[Hit]]:
        config = self.source.config
        scoring = document_scoring(config, documents)
        collection = self._collection_for_query(alias)
        base_mode, use_rerank = self._resolve_mode(collection, mode, rerank)
        reader = self._reader(collection)
        fault = reader[2] if base_mode == "hybrid" else None
        if fault is not None:
            # The dense channel alone still answers; a sparse fault must not take it down.
            warnings.warn(
                f"hybrid query answered by the dense channel alone: {fault}",
                DegradedSearchWarning,
                stacklevel=4,
            )
            base_mode = "dense"
        fusion = collection.record.spec.fusion_for(config)
        depth = k
        if base_mode == "hybrid":
            depth = max(k, fusion.depth)
        if use_rerank:
            depth = max(depth, config.rerank.top_n)
        if scoring is not None:
            depth *= CHUNKS_PER_DOCUMENT  # several chunks of a document share its rank
        channel = self.source.sparse_channel_for(collection)
        engine = scoring is None and _engine_fuses(collection, reader[0], channel, fusion)
        if base_mode == "hybrid" and engine:
            ranked = self._fused_in_engine(
                collection, reader, texts, depth, where, fusion, query_vectors
            )
        else:
            channels = ("dense", "sparse") if base_mode == "hybrid" else (base_mode,)
            lead_runs, lead_weight = None, 1.0
            with_documents = scoring is not None and base_mode != "sparse"
            if with_documents and collection.record.spec.index.document_vectors:
                query_vectors = self._query_vectors(collection, texts, query_vectors)
                lead_runs, lead_weight = self._document_runs(
                    collection, query_vectors, depth // CHUNKS_PER_DOCUMENT, where
                )
            runs = self._channel_runs(
                collection, reader, texts, depth, where, channels, query_vectors
            )

            def combine(query_runs: list[dict[Any, float]]) -> list[tuple[Any, float]]:
                if len(query_runs) == 1:
                    return sorted(query_runs[0].items(), key=lambda x: (-x[1], x[0]))
                weights = list(fusion.weights)
                if len(query_runs) > len(channels):  # the document vectors' run
                    weights = [*weights[: len(channels)], lead_weight]
                return fuse(
                    query_runs,
                    method=fusion.method,
                    weights=weights,
                    k=fusion.k,
                    normalization=fusion.normalization,
                )

            ranked = [combine([run[i] for run in runs]) for i in range(len(texts))]
            if scoring is not None:
                ranked = by_document(
                    self.source.store, runs, ranked, scoring, combine, documents=lead_runs
                )
        rows = self.source.store.chunk_rows(sorted({i for r in ranked for i, _ in r}))
        if use_rerank:
            ranked = self._rerank(texts, ranked, rows, rerank)
        return [_hits(r[:k], rows) for r in ranked]

    def channel_runs(
        self,
        texts: list[str],
        *,
        depth: int,
        where: Where,
        channels: tuple[str, ...],
        alias: str,
        query_vectors: np.ndarray | None,
    ) -> list[list[dict[int, float]]]:
        collection = self._collection_for_query(alias)
        reader = self._reader(collection)
        return self._channel_runs(collection, reader, texts, depth, where, channels, query_vectors)

    def _channel_runs(
        self,
        collection: Collection,
        reader: tuple[DenseIndex, Any, IndexCorruptError | None],
        texts: list[str],
        depth: int,
        where: Where,
        channels: tuple[str, ...],
        query_vectors: np.ndarray | None,
    ) -> list[list[dict[int, float]]]:
        source = self.source
        dense, sparse, sparse_fault = reader
        if "sparse" in channels and sparse_fault is not None:
            raise sparse_fault
        allowed = self._allowed_ids(collection, where)
        if allowed is not None and len(allowed) == 0:
            return [[{} for _ in texts] for _ in channels]
        channel = source.sparse_channel_for(collection)
        runs: list[list[dict[int, float]]] = []
        for channel_name in channels:
            if channel_name == "dense":
                vectors = self._query_vectors(collection, texts, query_vectors)
                runs.append(_as_runs(*dense.search(vectors, depth, allowed_ids=allowed)))
            elif sparse is not None and channel is not None:
                runs.append(_as_runs(*channel.search(sparse, texts, depth, allowed)))
            else:
                raise ConfigError(f"collection {collection.name!r} has no sparse index")
        return runs

    def _document_runs(
        self, collection: Collection, vectors: np.ndarray, depth: int, where: Where
    ) -> tuple[list[dict[int, float]] | None, float]:
        """The document vectors' ranking per query, keyed by each document's first chunk
        (``[index] document_vectors``), and its weight in the fusion; a filter allows the
        documents whose first chunk it allows. None where no document is longer than one
        chunk: a single-chunk document's vector is its chunk vector, already in the dense run."""
        generation = collection.record.generation
        cached = self._documents.get(collection.name)
        if cached is None or cached[0] != generation:
            share = self.source.store.multi_chunk_share(collection.chunking_fp)
            index = load_document_index(collection) if share > 0 else None
            cached = (generation, index, share)
            self._documents[collection.name] = cached
        _, index, share = cached
        if index is None:
            return None, 1.0
        allowed = self._allowed_ids(collection, where)
        if allowed is not None and len(allowed) == 0:
            return [{} for _ in vectors], share
        return _as_runs(*index.search(vectors, depth, allowed_ids=allowed)), share

    def _fused_in_engine(
        self,
        collection: Collection,
        reader: tuple[DenseIndex, Any, IndexCorruptError | None],
        texts: list[str],
        depth: int,
        where: Where,
        fusion: FusionConfig,
        query_vectors: np.ndarray | None,
    ) -> list[list[tuple[int, float]]]:
        """Both channels searched and fused by Qdrant in one request (``[fusion]
        server_side``): the same ranking ragkit's own fusion of the two runs gives."""
        dense, sparse, _ = reader
        allowed = self._allowed_ids(collection, where)
        if allowed is not None and len(allowed) == 0:
            return [[] for _ in texts]
        channel: Any = self.source.sparse_channel_for(collection)
        scores, ids = cast(HoldsSparseVectors, dense).search_hybrid(
            self._query_vectors(collection, texts, query_vectors),
            channel.query_vectors(sparse, texts),
            depth,
            method=fusion.method,
            depth=depth,
            rrf_k=fusion.k,
            allowed_ids=allowed,
        )
        return [sorted(run.items(), key=lambda x: (-x[1], x[0])) for run in _as_runs(scores, ids)]

    def _allowed_ids(self, collection: Collection, where: Where) -> np.ndarray | None:
        """The chunk ids a metadata filter allows (None: no filter)."""
        filters = parse_filters(where)
        if not filters:
            return None
        store = self.source.store
        where_sql, params = filters_sql(filters)
        allowed = store.chunk_ids_where(where_sql, params, collection.chunking_fp)
        if len(allowed) == 0:
            check_filter_keys(filters, store)  # a typo'd key is not "no hits"
        return allowed

    def _query_vectors(
        self, collection: Collection, texts: list[str], given: np.ndarray | None
    ) -> np.ndarray:
        if given is None:
            return self.encoding.encode(collection, texts)
        if len(given) != len(texts):
            raise ConfigError(f"{len(given)} query vectors for {len(texts)} queries")
        return given

    def available_modes(self, alias: str) -> list[str]:
        source = self.source
        collection = source.collection(alias)
        modes = ["dense"]
        if collection is not None and collection.has_sparse(source.sparse_channel_for(collection)):
            modes += ["sparse", "hybrid"]
        if source.config.rerank.model:
            modes.append(f"{modes[-1]}+rerank")
        return modes

    def _resolve_mode(
        self, collection: Collection, mode: str | None, rerank: bool | str | None
    ) -> tuple[str, bool]:
        config = self.source.config
        has_sparse = collection.has_sparse(self.source.sparse_channel_for(collection))
        requested = mode or ("hybrid" if has_sparse else "dense")
        base, _, suffix = requested.partition("+")
        if base not in ("dense", "sparse", "hybrid") or suffix not in ("", "rerank"):
            raise ConfigError(
                f"query mode {requested!r} is unknown; use dense, sparse or hybrid "
                "(optionally with +rerank)"
            )
        if base != "dense" and not has_sparse:
            raise ConfigError(
                f"query mode {base!r} needs a sparse index, and collection {collection.name!r} "
                f"has none for its channel ({collection.record.spec.sparse.model!r}); a "
                "collection with a sparse channel is made with `create_collection(..., "
                "sparse=...)`"
            )
        use_rerank = bool(suffix) or bool(rerank) or (rerank is None and bool(config.rerank.model))
        if use_rerank and not (isinstance(rerank, str) or config.rerank.model):
            raise ConfigError("rerank needs a cross-encoder: set [rerank] model or pass a model")
        return base, use_rerank

    def _rerank(
        self,
        texts: list[str],
        ranked: list[list[tuple[int, float]]],
        rows: dict[int, Any],
        model: bool | str | None,
    ) -> list[list[tuple[int, float]]]:
        settings = self.source.config.rerank
        reranker = self._reranker(model if isinstance(model, str) else settings.model)
        top_n = settings.top_n
        out = []
        for query, candidates in zip(texts, ranked, strict=True):
            head = [(i, _embed_text(rows[i])) for i, _ in candidates[:top_n] if i in rows]
            out.append(reranker.rerank(query, head) + candidates[top_n:])
        return out

    def _reranker(self, name: str) -> Any:
        cached = self._rerankers.get(name)
        if cached is None:
            from ragkit.retrieval.rerank import CrossEncoderReranker

            batch_size = self.source.config.rerank.batch_size
            cached = CrossEncoderReranker.load(name, batch_size=batch_size)
            self._rerankers[name] = cached
        return cached

    def _collection_for_query(self, alias: str) -> Collection:
        """The alias (or collection name) resolved once; the collection's own encoder is
        loaded (or taken from the cache) here, so a mismatch is refused before any search."""
        source = self.source
        collection = source.collection(alias)
        if collection is None:
            if alias == "default":
                raise WorkspaceError(
                    f"{source.root}: nothing is indexed yet (no collection behind alias "
                    f"{alias!r}); run `ragkit ingest PATH` first"
                )
            known = ", ".join(sorted({*source.store.aliases(), *_names(source)}))
            raise WorkspaceError(
                f"{source.root}: no collection or alias {alias!r}; known: {known or 'none'}"
            )
        if self.encoding.needs_own_encoder(collection):
            source.encoder_for(collection)  # (an adapter serving: the new model encodes)
        self.encoding.warm_the_other_side(alias, collection)
        return collection

    def _reader(self, collection: Collection) -> tuple[DenseIndex, Any, IndexCorruptError | None]:
        """Indexes of the committed generation, reloaded when a writer committed a new one.
        A sparse index that does not load is kept as its error, so dense queries go on.
        ``collection`` comes from :meth:`_collection_for_query`, which has just read its row:
        reading it again here would only repeat that query on every search."""
        cached = self._readers.get(collection.name)
        if cached and cached[0] == collection.record.generation:
            return cached[1], cached[2], cached[3]
        channel = self.source.sparse_channel_for(collection)
        for attempt in range(3):
            generation = collection.record.generation
            dense = collection.load_dense()
            sparse, fault = None, None
            if channel is not None and collection.has_sparse(channel):
                try:
                    sparse = collection.load_sparse(channel)
                except IndexCorruptError as exc:
                    fault = exc
            # A writer may commit (and delete this generation's files) between the two loads:
            # read both again from the new generation rather than mix two, or call a file
            # that was replaced "damaged".
            collection.refresh()
            if collection.record.generation == generation or attempt == 2:
                break
        self._readers[collection.name] = (generation, dense, sparse, fault)
        return dense, sparse, fault


def _engine_fuses(collection: Collection, dense: Any, channel: Any, fusion: FusionConfig) -> bool:
    """Whether Qdrant can fuse this collection's hybrid query as ragkit would: asked for, the
    sparse vectors are in its points, and the method is one Qdrant has, unweighted."""
    return (
        fusion.server_side
        and collection.index_config.qdrant_sparse
        and isinstance(dense, HoldsSparseVectors)
        and isinstance(channel, ExportsSparseVectors)
        and fusion.method in ("rrf", "dbsf")
        and len(set(fusion.weights)) <= 1
    )


def _names(source: CollectionSource) -> list[str]:
    return [record.name for record in source.store.collections()]


def _as_runs(scores: np.ndarray, ids: np.ndarray) -> list[dict[int, float]]:
    return [
        {int(i): float(s) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0}
        for row_scores, row_ids in zip(scores, ids, strict=True)
    ]


def _embed_text(row: Any) -> str:
    return f"{row['context']}\n\n{row['text']}" if row["context"] else row["text"]


def _hits(ranked: list[tuple[int, float]], rows: dict[int, Any]) -> list[Hit]:
    hits = []
    for chunk, score in ranked:
        row = rows.get(int(chunk))
        if row is None:  # a chunk deleted since the index generation was read
            continue
        metadata = {
            **json.loads(row["metadata_json"]),
            "source": row["source"],
            "format": row["format"],
        }
        hits.append(
            Hit(
                chunk_id=row["chunk_id"],
                score=float(score),
                text=row["text"],
                doc_id=row["doc_id"],
                uri=row["uri"],
                title=row["title"],
                headings=tuple(json.loads(row["headings_json"])),
                metadata=metadata,
                rank=len(hits) + 1,
            )
        )
    return hits
