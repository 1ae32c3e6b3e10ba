"""What the two Qdrant backends share: the point layout, the index protocol on it, the manifest.

:mod:`ragkit.indexes.qdrant_index` (qdrant-client: embedded folder or server) and
:mod:`ragkit.indexes.qdrant_edge_index` (the Edge engine in-process) store the same points — a
``dense`` named vector and an optional ``sparse`` one per chunk id — and must answer alike, so
that either can stand in for the other, for FAISS and for ``SparseIndex``. :class:`QdrantChannels`
implements that protocol once; each backend supplies only the engine calls it rests on.

Hybrid search runs Qdrant's own fusion (prefetch + RRF or DBSF) in one request. RRF uses the
textbook formula ``sum 1 / (rrf_k + rank)`` with 1-based ranks; Qdrant counts ranks from 0, so
``rrf_k + 1`` is what is sent.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, IndexCorruptError, MissingDependencyError
from ragkit.indexes.base import atomic_write

__all__ = ["QdrantChannels", "QdrantSparseView"]

DENSE = "dense"
SPARSE = "sparse"
PAD_SCORE = float(np.finfo(np.float32).min)  # what FAISS puts in empty slots
DEFAULT_RRF_K = 60
MANIFEST_FORMAT = 1
KINDS = ("flat", "hnsw")
FUSIONS = ("rrf", "dbsf")

SparseRow = tuple[np.ndarray, np.ndarray]
Hits = list[tuple[Any, float]]


def import_extra(module: str, package: str, purpose: str) -> Any:
    """Import an engine of the ``qdrant`` extra, or name the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, "qdrant", purpose) from exc


OWNER_KEY = "ragkit_workspace"  # a collection's metadata: the workspace that created it


def check_owner(collection: str, path: str | None, owner: str, metadata: dict[str, Any]) -> None:
    """Refuse a Qdrant collection that another ragkit workspace created (one made before
    owners were recorded, or by another tool, names none and is used as before)."""
    theirs = metadata.get(OWNER_KEY)
    if owner and theirs and theirs != owner:
        where = path or "the Qdrant server"
        raise ConfigError(
            f"Qdrant collection {collection!r} in {where} belongs to another ragkit "
            f"workspace (id {theirs}; this one is {owner}): two workspaces must not share a "
            "collection's points. Give this workspace's collection a name of its own with "
            "index.qdrant_collection"
        )


def check_kind(kind: str, engine: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"index.kind={kind!r} is not available with {engine}; use {KINDS}")


class QdrantChannels(ABC):
    """The dense index protocol, plus a sparse channel and fusion, over one set of Qdrant points.

    A subclass sets ``dim``, ``_count`` (points stored) and ``_batch`` (points per write
    request) and implements the engine calls at the end of this class.
    """

    dim: int
    _count: int
    _batch: int

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
        """Existing points get their vectors updated (the others stay), new ones are inserted."""
        present = self._present(ids)
        for start in range(0, len(ids), self._batch):
            end = min(start + self._batch, len(ids))
            batch = [(int(ids[i]), channels[i]) for i in range(start, end)]
            update = [p for p in batch if p[0] in present]
            self._put(update, [p for p in batch if p[0] not in present])
        self._count += len(set(ids.tolist()) - present)

    def remove(self, ids: np.ndarray) -> bool:
        """Delete whole points (both channels) in place, so never ask for a rebuild."""
        ids = point_ids(ids)
        present = self._present(ids) if len(ids) else set()
        if present:
            self._delete(sorted(present))
            self._count -= len(present)
        return True

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray, *, sparse: Any = None) -> None:
        """Exactly these points afterwards (sparse only where given).

        Points are deleted rather than the collection dropped, so a Qdrant collection keeps
        its aliases.
        """
        self.remove(self.ids())
        self.add(ids, vectors, sparse=sparse)

    def ids(self) -> np.ndarray:
        found: list[int] = []
        offset = None
        while True:
            records, offset = self._scroll(offset)
            found.extend(int(r.id) for r in records)
            if offset is None:
                return np.sort(np.array(found, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_matrix(queries, self.dim)
        return self._run([self._nearest(q.tolist(), DENSE) for q in queries], k, allowed_ids)

    def search_sparse(
        self, queries: Any, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = sparse_rows(queries)
        return self._run(
            [self._nearest(self._sparse(r), SPARSE) if len(r[0]) else None for r in rows],
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
        """Fuse a dense and a sparse top-``depth`` in the engine; scores are fused scores."""
        if method not in FUSIONS:
            raise ConfigError(f"fusion method {method!r} is unknown; use one of {FUSIONS}")
        dense = as_matrix(dense_queries, self.dim)
        rows = sparse_rows(sparse_queries, len(dense))
        where = self._filter(allowed_ids)
        fusion = self._fusion(method, rrf_k + 1)  # Qdrant's ranks start at 0, the textbook's at 1
        requests = [
            self._fused(
                q.tolist(), self._sparse(row) if len(row[0]) else None, fusion, depth, where
            )
            for q, row in zip(dense, rows, strict=True)
        ]
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
        width = k if sparse else min(k, len(self))
        pad = 0.0 if sparse else PAD_SCORE
        limit = min(k, len(self))
        if limit <= 0 or not requests or (allowed_ids is not None and not len(allowed_ids)):
            return pack_hits([[] for _ in requests], width, pad)
        asked = [r for r in requests if r is not None]
        answers = iter(self._query(asked, limit, self._filter(allowed_ids)))
        return pack_hits([[] if r is None else next(answers) for r in requests], width, pad)

    def sparse_index(self) -> QdrantSparseView:
        """The sparse channel seen through the ``SparseIndex`` protocol."""
        return QdrantSparseView(self)

    def sparse_vectors(self, ids: np.ndarray) -> dict[int, SparseRow]:
        """(indices, values) of each point among ``ids`` that holds a sparse vector."""
        found: dict[int, SparseRow] = {}
        for start in range(0, len(ids), 4 * self._batch):
            for record in self._retrieve_sparse(
                [int(i) for i in ids[start : start + 4 * self._batch]]
            ):
                vector = record.vector.get(SPARSE) if isinstance(record.vector, dict) else None
                if vector is not None:
                    indices = np.asarray(vector.indices, dtype=np.int64)
                    found[int(record.id)] = indices, np.asarray(vector.values, dtype=np.float32)
        return found

    def reconcile(self, expected_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids stored here that the store lacks, store ids missing here), each sorted."""
        return reconcile_ids(self.ids(), expected_ids)

    # -- engine calls -----------------------------------------------------------------------
    @abstractmethod
    def _present(self, ids: np.ndarray) -> set[int]:
        """Which of ``ids`` are stored."""

    @abstractmethod
    def _put(self, update: list[tuple[int, Any]], insert: list[tuple[int, Any]]) -> None:
        """Write (point id, {channel: vector}) pairs: ``update`` exist, ``insert`` are new."""

    @abstractmethod
    def _retrieve_sparse(self, ids: list[int]) -> Sequence[Any]:
        """Records of the stored points among ``ids``, ``vector`` holding only the sparse one."""

    @abstractmethod
    def _delete(self, ids: list[int]) -> None:
        """Delete these stored points."""

    @abstractmethod
    def _scroll(self, offset: Any) -> tuple[Sequence[Any], Any]:
        """One page of point records from ``offset`` on, and the next offset (None at the end)."""

    @abstractmethod
    def _nearest(self, query: Any, using: str) -> dict[str, Any]:
        """A nearest-neighbour request (no limit or filter yet) on channel ``using``."""

    @abstractmethod
    def _fusion(self, method: str, k: int) -> Any:
        """The fusion query for ``method`` ("rrf" with Qdrant's ``k``, or "dbsf")."""

    @abstractmethod
    def _fused(
        self, dense: list[float], sparse: Any | None, fusion: Any, depth: int, where: Any
    ) -> dict[str, Any]:
        """A request fusing the top ``depth`` of each channel (no sparse one when ``None``)."""

    @abstractmethod
    def _query(self, requests: list[dict[str, Any]], limit: int, where: Any) -> list[Hits]:
        """Run ``requests`` in one batch; (point id, score) lists, best first, one a request."""

    @abstractmethod
    def _filter(self, allowed_ids: np.ndarray | None) -> Any:
        """The engine's filter keeping ``allowed_ids`` only (``None``: no filter)."""

    @abstractmethod
    def _sparse(self, row: SparseRow) -> Any:
        """The engine's sparse vector for (indices, values)."""


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


def point_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Qdrant point ids are unsigned: refuse a negative chunk id instead of wrapping it."""
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(array) and array.min() < 0:
        raise ValueError(f"Qdrant needs non-negative point ids; got {int(array.min())}")
    return array


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))


def sparse_rows(matrix: Any, expected: int | None = None) -> list[SparseRow]:
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
    """The small JSON file that describes one saved generation, written atomically."""
    text = json.dumps({"format": MANIFEST_FORMAT, **fields}, indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def read_manifest(path: Path, dim: int, backend: str) -> dict[str, Any]:
    """The manifest at ``path``, checked to be ``backend``'s and of dimension ``dim``."""
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
