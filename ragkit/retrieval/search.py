"""The query path of a workspace: channels, fusion, rerank, and the readers they search.

Kept apart from :mod:`ragkit.workspace` so that the workspace stays about its parts and jobs,
while everything a query touches (and caches between queries) lives here. A workspace owns one
:class:`Searcher`; its ``query``/``query_many``/``channel_runs`` methods delegate to it.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.documents import Hit
from ragkit.encoders.fingerprint import same_encoder
from ragkit.errors import (
    ConfigError,
    DegradedSearchWarning,
    EncoderMismatchError,
    IndexCorruptError,
    WorkspaceError,
)
from ragkit.retrieval.filters import check_filter_keys, filters_sql, parse_filters
from ragkit.retrieval.fusion import fuse

if TYPE_CHECKING:
    from ragkit.collection import Collection
    from ragkit.indexes import DenseIndex
    from ragkit.workspace import Workspace

__all__ = ["Searcher"]

Where = str | list[str] | dict[str, Any] | None


class Searcher:
    """Answers queries for one workspace and keeps what is costly to load between them: the
    indexes of each collection's committed generation and the cross-encoders by name."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._readers: dict[str, tuple[int, DenseIndex, Any, IndexCorruptError | None]] = {}
        self._rerankers: dict[str, Any] = {}

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
    ) -> list[list[Hit]]:
        config = self.workspace.config
        collection = self._collection_for_query(alias)
        base_mode, use_rerank = self._resolve_mode(collection, mode, rerank)
        fault = self._reader(collection)[2] if base_mode == "hybrid" else None
        if fault is not None:
            # The dense channel alone still answers; a sparse fault must not take it down.
            warnings.warn(
                f"hybrid query answered by the dense channel alone: {fault}",
                DegradedSearchWarning,
                stacklevel=4,
            )
            base_mode = "dense"
        fusion = config.fusion
        depth = k
        if base_mode == "hybrid":
            depth = max(k, fusion.depth)
        if use_rerank:
            depth = max(depth, config.rerank.top_n)
        channels = ("dense", "sparse") if base_mode == "hybrid" else (base_mode,)
        runs = self.channel_runs(
            texts,
            depth=depth,
            where=where,
            channels=channels,
            alias=alias,
            query_vectors=query_vectors,
        )
        if base_mode == "hybrid":
            ranked = [
                fuse(
                    [run[i] for run in runs],
                    method=fusion.method,
                    weights=fusion.weights,
                    k=fusion.k,
                    normalization=fusion.normalization,
                )
                for i in range(len(texts))
            ]
        else:
            ranked = [sorted(run.items(), key=lambda x: (-x[1], x[0])) for run in runs[0]]
        rows = self.workspace.store.chunk_rows(sorted({i for r in ranked for i, _ in r}))
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
        workspace = self.workspace
        collection = self._collection_for_query(alias)
        dense, sparse, sparse_fault = self._reader(collection)
        if "sparse" in channels and sparse_fault is not None:
            raise sparse_fault
        allowed = None
        filters = parse_filters(where)
        if filters:
            allowed = workspace.store.chunk_ids_where(*filters_sql(filters))
            if len(allowed) == 0:
                check_filter_keys(filters, workspace.store)  # a typo'd key is not "no hits"
                return [[{} for _ in texts] for _ in channels]
        runs: list[list[dict[int, float]]] = []
        for channel_name in channels:
            if channel_name == "dense":
                vectors = query_vectors
                if vectors is None:
                    vectors = workspace.encoder.encode_queries(texts)
                elif len(vectors) != len(texts):
                    raise ConfigError(f"{len(vectors)} query vectors for {len(texts)} queries")
                runs.append(_as_runs(*dense.search(vectors, depth, allowed_ids=allowed)))
            elif sparse is not None and workspace.sparse_channel is not None:
                found = workspace.sparse_channel.search(sparse, texts, depth, allowed)
                runs.append(_as_runs(*found))
            else:
                raise ConfigError(f"collection {collection.name!r} has no sparse index")
        return runs

    def available_modes(self, alias: str) -> list[str]:
        workspace = self.workspace
        collection = workspace.collection(alias)
        modes = ["dense"]
        if collection is not None and collection.has_sparse(workspace.sparse_channel):
            modes += ["sparse", "hybrid"]
        if workspace.config.rerank.model:
            modes.append(f"{modes[-1]}+rerank")
        return modes

    def _resolve_mode(
        self, collection: Collection, mode: str | None, rerank: bool | str | None
    ) -> tuple[str, bool]:
        config = self.workspace.config
        has_sparse = collection.has_sparse(self.workspace.sparse_channel)
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
                f"has none for the configured channel ({config.sparse.model!r}); set "
                "[sparse] model in ragkit.toml and run `ragkit ingest` to build it"
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
        settings = self.workspace.config.rerank
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

            batch_size = self.workspace.config.rerank.batch_size
            cached = CrossEncoderReranker.load(name, batch_size=batch_size)
            self._rerankers[name] = cached
        return cached

    def _collection_for_query(self, alias: str) -> Collection:
        workspace = self.workspace
        collection = workspace.collection(alias)
        if collection is None:
            raise WorkspaceError(
                f"{workspace.root}: nothing is indexed yet (no collection behind alias {alias!r}); "
                "run `ragkit ingest PATH` first"
            )
        described = workspace.encoder.fingerprint
        fingerprint = described["id"]
        record = collection.record
        if not same_encoder(record.model_fp, record.encoder, described):
            raise EncoderMismatchError(
                f"collection {collection.name!r} was built with encoder "
                f"{collection.record.encoder.get('name')!r} ({collection.record.model_fp[:12]}); "
                f"the query encoder {workspace.encoder.name!r} has fingerprint {fingerprint[:12]}. "
                "Query with the collection's encoder, or migrate the collection."
            )
        return collection

    def _reader(self, collection: Collection) -> tuple[DenseIndex, Any, IndexCorruptError | None]:
        """Indexes of the committed generation, reloaded when a writer committed a new one.
        A sparse index that does not load is kept as its error, so dense queries go on."""
        collection.refresh()
        cached = self._readers.get(collection.name)
        if cached and cached[0] == collection.record.generation:
            return cached[1], cached[2], cached[3]
        channel = self.workspace.sparse_channel
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
