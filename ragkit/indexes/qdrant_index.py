"""Qdrant backend: one collection holding a dense named vector and an optional sparse one.

Modes: in memory (tests), embedded ``path=`` and server ``url=`` (HNSW, concurrent readers).
The embedded mode is qdrant-client's local mode: pure Python/numpy, exact search only, one SQLite
commit per point written (~20 ms), one process per folder — fine for tests and small
collections; :mod:`ragkit.indexes.qdrant_edge_index` is the embedded engine to use at scale.

Crash consistency differs from FAISS. FAISS writes a new file per generation, so readers always
see one whole generation. Qdrant applies every write in place, so ``save`` only records a small
manifest (collection name, point count) under the generation's file name; after a crash the
writer calls :meth:`QdrantIndex.reconcile` with the store's chunk ids, deletes the extra points
and re-adds the missing ones from the embedding cache. A chunk id is derived from its text, so
a point with the right id always holds the right vector: comparing ids is enough.

Hybrid search runs Qdrant's own fusion (``prefetch`` + RRF or DBSF) in one request. RRF uses
the textbook formula ``sum 1 / (rrf_k + rank)`` with 1-based ranks; Qdrant counts ranks from 0,
so ``rrf_k + 1`` is what is sent.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, IndexCorruptError, MissingDependencyError, WorkspaceError
from ragkit.indexes.base import atomic_write

__all__ = ["QdrantIndex", "QdrantSparseView"]

DENSE = "dense"
SPARSE = "sparse"
PAD_SCORE = float(np.finfo(np.float32).min)  # what FAISS puts in empty slots
DEFAULT_RRF_K = 60
MANIFEST_FORMAT = 1
_BATCH = 512
_KINDS = ("flat", "hnsw")
_FUSIONS = ("rrf", "dbsf")


def import_qdrant_client() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client", "qdrant", "The Qdrant backend") from exc
    return qdrant_client


class QdrantIndex:
    """A :class:`~ragkit.indexes.base.DenseIndex` plus a sparse channel and server-side fusion.

    ``kind="flat"`` asks Qdrant for exact search (same hits as FAISS flat); ``"hnsw"`` uses the
    HNSW graph a server builds once a segment passes its indexing threshold.
    """

    def __init__(
        self,
        dim: int,
        *,
        collection: str = "ragkit",
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        kind: str = "flat",
        distance: str = "dot",
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        timeout: int = 60,
    ) -> None:
        qdrant_client = import_qdrant_client()
        from qdrant_client import models

        if kind not in _KINDS:
            raise ConfigError(f"index.kind={kind!r} is not available with Qdrant; use {_KINDS}")
        if distance not in ("dot", "cosine"):
            raise ConfigError(f"Qdrant distance {distance!r} is unknown; use 'dot' or 'cosine'")
        if path is not None and url:
            raise ConfigError("set either qdrant_path (embedded) or qdrant_url (server), not both")
        self.dim = dim
        self.collection = collection
        self.kind = kind
        self.mode = "server" if url else "path" if path is not None else "memory"
        self._models = models
        self._distance = models.Distance.DOT if distance == "dot" else models.Distance.COSINE
        self._hnsw = models.HnswConfigDiff(m=hnsw_m, ef_construct=hnsw_ef_construction)
        # Local mode is always exact and warns about search params, so only a server gets them.
        self._params = None
        if self.mode == "server":
            self._params = (
                models.SearchParams(exact=True)
                if kind == "flat"
                else models.SearchParams(hnsw_ef=hnsw_ef_search)
            )
        self._path = str(Path(path).resolve()) if path is not None else None
        if self._path is not None:
            self.client = _LocalClients.acquire(self._path)
        elif url:
            key = api_key or os.environ.get("QDRANT_API_KEY") or None
            self.client = qdrant_client.QdrantClient(url=url, api_key=key, timeout=timeout)
        else:
            self.client = qdrant_client.QdrantClient(location=":memory:")
        try:
            self._ensure_collection()
            self._count = self.client.count(self.collection, exact=True).count
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_config(
        cls, dim: int, config: Any, *, directory: Path, name: str, collection: str | None = None
    ) -> QdrantIndex:
        """Build from ``IndexConfig``; the embedded store defaults to ``<directory>/qdrant``.

        ``collection`` (from a manifest) wins over ``index.qdrant_collection``, which wins over
        ``name`` (the ragkit collection's name).
        """
        url = getattr(config, "qdrant_url", "") or None
        path = None if url else Path(getattr(config, "qdrant_path", "") or directory / "qdrant")
        return cls(
            dim,
            collection=collection or getattr(config, "qdrant_collection", "") or name,
            path=path,
            url=url,
            api_key=getattr(config, "qdrant_api_key", "") or None,
            kind=config.kind,
            hnsw_m=config.hnsw_m,
            hnsw_ef_construction=config.hnsw_ef_construction,
            hnsw_ef_search=config.hnsw_ef_search,
        )

    @classmethod
    def load(cls, path: Path, dim: int, config: Any) -> QdrantIndex:
        """Open the collection that a manifest written by :meth:`save` names."""
        manifest = read_manifest(path, dim, "qdrant")
        name = manifest["collection"]
        return cls.from_config(dim, config, directory=path.parent, name=name, collection=name)

    def _ensure_collection(self) -> None:
        models = self._models
        if self.client.collection_exists(self.collection) or self.collection in self.aliases():
            vectors = self.client.get_collection(self.collection).config.params.vectors
            dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
            if dense is None or dense.size != self.dim:
                found = "no 'dense' vector" if dense is None else f"dimension {dense.size}"
                raise ConfigError(
                    f"Qdrant collection {self.collection!r} has {found}, but this index needs "
                    f"'dense' vectors of dimension {self.dim}; set index.qdrant_collection to "
                    "another name or delete that collection"
                )
            return
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=self.dim, distance=self._distance)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams()},
            hnsw_config=self._hnsw,
        )

    def close(self) -> None:
        if self._path is not None:
            _LocalClients.release(self._path)
        else:
            self.client.close()

    # -- protocol ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, sparse: Any = None) -> None:
        """Insert or update; a point keeps the channel this call does not write."""
        ids = point_ids(ids)
        if not len(ids):
            return
        vectors = as_matrix(vectors, self.dim)
        rows = sparse_rows(sparse, len(ids)) if sparse is not None else None
        channels = [
            {DENSE: v.tolist()} | ({SPARSE: self._sparse(rows[i])} if rows is not None else {})
            for i, v in enumerate(vectors)
        ]
        self._write(ids, channels)

    def add_sparse(self, ids: np.ndarray, csr: Any) -> None:
        """Sparse weights (e.g. SPLADE) for existing or new points, as a CSR matrix."""
        ids = point_ids(ids)
        if not len(ids):
            return
        rows = sparse_rows(csr, len(ids))
        self._write(ids, [{SPARSE: self._sparse(row)} for row in rows])

    def _write(self, ids: np.ndarray, channels: list[dict[str, Any]]) -> None:
        models = self._models
        present = self._present(ids)
        for start in range(0, len(ids), _BATCH):
            batch = range(start, min(start + _BATCH, len(ids)))
            update = [
                models.PointVectors(id=int(ids[i]), vector=channels[i])
                for i in batch
                if int(ids[i]) in present
            ]
            insert = [
                models.PointStruct(id=int(ids[i]), vector=channels[i])
                for i in batch
                if int(ids[i]) not in present
            ]
            if update:
                self.client.update_vectors(self.collection, points=update, wait=True)
            if insert:
                self.client.upsert(self.collection, points=insert, wait=True)
        self._count += len(set(ids.tolist()) - present)

    def _present(self, ids: np.ndarray) -> set[int]:
        found: set[int] = set()
        for start in range(0, len(ids), 4 * _BATCH):
            chunk = [int(i) for i in ids[start : start + 4 * _BATCH]]
            records = self.client.retrieve(
                self.collection, chunk, with_payload=False, with_vectors=False
            )
            found.update(int(r.id) for r in records)
        return found

    def remove(self, ids: np.ndarray) -> bool:
        """Delete whole points (both channels); Qdrant deletes in place, so never a rebuild."""
        ids = point_ids(ids)
        present = self._present(ids) if len(ids) else set()
        if present:
            selector = self._models.PointIdsList(points=sorted(present))
            self.client.delete(self.collection, points_selector=selector, wait=True)
            self._count -= len(present)
        return True

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray, *, sparse: Any = None) -> None:
        """Exactly these points afterwards (sparse only where given).

        Points are deleted rather than the collection dropped, so its aliases survive.
        """
        self.remove(self.ids())
        self.add(ids, vectors, sparse=sparse)

    def ids(self) -> np.ndarray:
        found: list[int] = []
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                limit=10_000,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            found.extend(int(r.id) for r in records)
            if offset is None:
                return np.sort(np.array(found, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_matrix(queries, self.dim)
        return self._run([{"query": q.tolist(), "using": DENSE} for q in queries], k, allowed_ids)

    def search_sparse(
        self, queries: Any, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = sparse_rows(queries)
        return self._run(
            [{"query": self._sparse(r), "using": SPARSE} if len(r[0]) else None for r in rows],
            k,
            allowed_ids,
            sparse=True,
        )

    def search_hybrid(
        self,
        dense_queries: np.ndarray,
        sparse_queries: Any,
        k: int,
        *,
        method: str = "rrf",
        depth: int = 100,
        rrf_k: int = DEFAULT_RRF_K,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fuse a dense and a sparse top-``depth`` inside Qdrant; scores are fused scores."""
        models = self._models
        if method not in _FUSIONS:
            raise ConfigError(f"fusion method {method!r} is unknown; use one of {_FUSIONS}")
        dense = as_matrix(dense_queries, self.dim)
        rows = sparse_rows(sparse_queries, len(dense))
        where = self._filter(allowed_ids)
        fusion = (
            models.RrfQuery(rrf=models.Rrf(k=rrf_k + 1))
            if method == "rrf"
            else models.FusionQuery(fusion=models.Fusion.DBSF)
        )
        requests = []
        for q, row in zip(dense, rows, strict=True):
            prefetch = [
                models.Prefetch(
                    query=q.tolist(), using=DENSE, limit=depth, filter=where, params=self._params
                )
            ]
            if len(row[0]):
                prefetch.append(
                    models.Prefetch(
                        query=self._sparse(row), using=SPARSE, limit=depth, filter=where
                    )
                )
            requests.append({"prefetch": prefetch, "query": fusion})
        return self._run(requests, k, allowed_ids)

    def _run(
        self,
        requests: Sequence[dict[str, Any] | None],
        k: int,
        allowed_ids: np.ndarray | None,
        *,
        sparse: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batched round trip; ``None`` requests (empty sparse queries) find nothing.

        Dense and hybrid results are shaped like FAISS's (k capped at the point count, empty
        slots -1 / float32 min); sparse ones like ``SparseIndex``'s (k columns, empty slots
        -1 / 0), so either backend can stand in for the other.
        """
        models = self._models
        width = k if sparse else min(k, len(self))
        pad = 0.0 if sparse else PAD_SCORE
        limit = min(k, len(self))
        if limit <= 0 or not len(requests) or (allowed_ids is not None and not len(allowed_ids)):
            return pack_hits([[] for _ in requests], width, pad)
        where = self._filter(allowed_ids)
        batch = [
            models.QueryRequest(
                **r,
                limit=limit,
                filter=where,
                with_payload=False,
                with_vector=False,
                params=self._params if r.get("using") == DENSE else None,
            )
            for r in requests
            if r is not None
        ]
        answers = iter(self.client.query_batch_points(self.collection, requests=batch))
        hits = [
            [] if r is None else [(p.id, p.score) for p in next(answers).points] for r in requests
        ]
        return pack_hits(hits, width, pad)

    def _filter(self, allowed_ids: np.ndarray | None) -> Any:
        if allowed_ids is None:
            return None
        models = self._models
        return models.Filter(must=[models.HasIdCondition(has_id=point_ids(allowed_ids).tolist())])

    def _sparse(self, row: tuple[np.ndarray, np.ndarray]) -> Any:
        return self._models.SparseVector(indices=row[0].tolist(), values=row[1].tolist())

    def sparse_index(self) -> QdrantSparseView:
        """This collection's sparse channel seen through the ``SparseIndex`` protocol."""
        return QdrantSparseView(self)

    # -- consistency and persistence --------------------------------------------------------
    def reconcile(self, expected_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids in Qdrant the store lacks, store ids Qdrant lacks), each sorted."""
        return reconcile_ids(self.ids(), expected_ids)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic step (a migration's swap)."""
        models = self._models
        operations: list[Any] = []
        if alias in self.aliases():
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def aliases(self) -> dict[str, str]:
        """Every alias on this Qdrant instance, mapped to its collection."""
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def save(self, path: Path) -> None:
        """Data already lives in Qdrant: record which collection and how many points."""
        write_manifest(
            path,
            {
                "backend": "qdrant",
                "mode": self.mode,
                "collection": self.collection,
                "dim": self.dim,
                "points": len(self),
            },
        )


class QdrantSparseView:
    """Adapter so the sparse channel plugs in wherever a ``SparseIndex`` is expected."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def add(self, ids: np.ndarray, csr: Any) -> None:
        self.index.add_sparse(ids, csr)

    def remove(self, ids: np.ndarray) -> bool:
        return self.index.remove(ids)

    def ids(self) -> np.ndarray:
        return self.index.ids()

    def search(
        self, queries: Any, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search_sparse(queries, k, allowed_ids=allowed_ids)

    def save(self, path: Path) -> None:
        self.index.save(path)


class _LocalClients:
    """One qdrant-client per embedded folder and process.

    Local mode locks its folder exclusively, so a second client in the same process (a reader
    next to the writer) would fail; sharing one, reference-counted, avoids that.
    """

    _lock = threading.Lock()
    _open: dict[str, tuple[Any, int]] = {}  # noqa: RUF012 - process-wide registry on purpose

    @classmethod
    def acquire(cls, path: str) -> Any:
        qdrant_client = import_qdrant_client()
        with cls._lock:
            client, users = cls._open.get(path, (None, 0))
            if client is None:
                try:
                    client = qdrant_client.QdrantClient(path=path)
                except RuntimeError as exc:
                    raise WorkspaceError(
                        f"{path}: the embedded Qdrant store is open in another process; "
                        "local mode allows one process at a time, so stop it or set "
                        "index.qdrant_url to use a Qdrant server"
                    ) from exc
            cls._open[path] = (client, users + 1)
            return client

    @classmethod
    def release(cls, path: str) -> None:
        with cls._lock:
            client, users = cls._open.get(path, (None, 0))
            if client is None:
                return
            if users <= 1:
                del cls._open[path]
                client.close()
            else:
                cls._open[path] = (client, users - 1)


# -- helpers shared with qdrant_edge_index ----------------------------------------------------
def point_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Qdrant point ids are unsigned: refuse a negative chunk id instead of wrapping it."""
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(array) and array.min() < 0:
        raise ValueError(f"Qdrant needs non-negative point ids; got {int(array.min())}")
    return array


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))


def sparse_rows(matrix: Any, expected: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """CSR rows as (indices, values), duplicates summed and zeros dropped (Qdrant refuses both)."""
    from scipy import sparse

    csr = sparse.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if expected is not None and csr.shape[0] != expected:
        raise ValueError(f"{csr.shape[0]} sparse rows for {expected} ids")
    return [
        (csr.indices[a:b].astype(np.int64), csr.data[a:b])
        for a, b in zip(csr.indptr[:-1], csr.indptr[1:], strict=True)
    ]


def pack_hits(
    hits: Sequence[Sequence[tuple[Any, float]]], width: int, pad: float = PAD_SCORE
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (id, score) lists → arrays of ``width`` columns, id -1 / ``pad`` when empty."""
    width = max(width, 0)
    scores = np.full((len(hits), width), pad, dtype=np.float32)
    ids = np.full((len(hits), width), -1, dtype=np.int64)
    for row, found in enumerate(hits):
        for col, (point, score) in enumerate(found[:width]):
            ids[row, col] = int(point)
            scores[row, col] = score
    return scores, ids


def reconcile_ids(present: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    expected = np.unique(np.asarray(expected, dtype=np.int64))
    present = np.unique(np.asarray(present, dtype=np.int64))
    return np.setdiff1d(present, expected), np.setdiff1d(expected, present)


def write_manifest(path: Path, fields: dict[str, Any]) -> None:
    text = json.dumps({"format": MANIFEST_FORMAT, **fields}, indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def read_manifest(path: Path, dim: int, backend: str) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"{path}: cannot read the {backend} manifest ({exc}); run `ragkit doctor --repair`"
        ) from exc
    if manifest.get("backend") != backend or manifest.get("dim") != dim:
        raise IndexCorruptError(
            f"{path}: manifest is for backend {manifest.get('backend')!r}, dimension "
            f"{manifest.get('dim')}; expected {backend!r}, {dim}"
        )
    return manifest
