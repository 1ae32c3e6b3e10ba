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

Hybrid search runs Qdrant's own fusion (``prefetch`` + RRF or DBSF) in one request; the index
protocol on top of the engine calls here is :class:`~ragkit.indexes.qdrant_common.QdrantChannels`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, WorkspaceError
from ragkit.indexes.qdrant_common import (
    DENSE,
    OWNER_KEY,
    SPARSE,
    Hits,
    QdrantChannels,
    QdrantSparseView,
    SparseRow,
    check_kind,
    check_owner,
    import_extra,
    point_ids,
    read_manifest,
    write_manifest,
)

__all__ = ["QdrantClusterSettings", "QdrantIndex", "QdrantSparseView"]

_BATCH = 512


def import_qdrant_client() -> Any:
    return import_extra("qdrant_client", "qdrant-client", "The Qdrant backend")


class QdrantIndex(QdrantChannels):
    """A :class:`~ragkit.indexes.base.DenseIndex` plus a sparse channel and server-side fusion.

    ``kind="flat"`` asks Qdrant for exact search (same hits as FAISS flat); ``"hnsw"`` uses the
    HNSW graph a server builds once a segment passes its indexing threshold.
    """

    _batch = _BATCH

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
        cluster: QdrantClusterSettings | None = None,
        owner: str = "",
    ) -> None:
        """``cluster``: how a new collection is sharded, replicated, stored and quantized;
        an existing collection keeps the settings it was created with. ``owner``: the ragkit
        workspace's identity, kept in a new collection's metadata; an existing collection
        whose metadata names another workspace is refused, so two workspaces on one server
        never write into one collection."""
        qdrant_client = import_qdrant_client()
        from qdrant_client import models

        check_kind(kind, "Qdrant")
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
        self.cluster = cluster or QdrantClusterSettings()
        self.owner = owner
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
        cls,
        dim: int,
        config: Any,
        *,
        directory: Path,
        name: str,
        collection: str | None = None,
        owner: str = "",
    ) -> QdrantIndex:
        """Build from ``IndexConfig``; the embedded store defaults to ``<directory>/qdrant``.

        ``collection`` (from a manifest) wins over ``index.qdrant_collection``, which wins over
        ``name`` (the ragkit collection's name).
        """
        url = getattr(config, "qdrant_url", "") or None
        path = None if url else Path(getattr(config, "qdrant_path", "") or directory / "qdrant")
        cluster = QdrantClusterSettings(
            shard_number=getattr(config, "qdrant_shard_number", 0),
            replication_factor=getattr(config, "qdrant_replication_factor", 0),
            write_consistency_factor=getattr(config, "qdrant_write_consistency_factor", 0),
            on_disk=getattr(config, "qdrant_on_disk", False),
            on_disk_payload=getattr(config, "qdrant_on_disk_payload", True),
            quantization=getattr(config, "qdrant_quantization", "none"),
        )
        return cls(
            dim,
            collection=collection or getattr(config, "qdrant_collection", "") or name,
            path=path,
            url=url,
            # The key itself lives only in the environment; the config names the variable.
            api_key=os.environ.get(getattr(config, "qdrant_api_key_env", "") or "QDRANT_API_KEY"),
            kind=config.kind,
            hnsw_m=config.hnsw_m,
            hnsw_ef_construction=config.hnsw_ef_construction,
            hnsw_ef_search=config.hnsw_ef_search,
            cluster=cluster,
            owner=owner,
        )

    @classmethod
    def load(cls, path: Path, dim: int, config: Any, owner: str = "") -> QdrantIndex:
        """Open the collection that a manifest written by :meth:`save` names."""
        manifest = read_manifest(path, dim, "qdrant")
        name = manifest["collection"]
        return cls.from_config(
            dim, config, directory=path.parent, name=name, collection=name, owner=owner
        )

    def _ensure_collection(self) -> None:
        models = self._models
        if self.client.collection_exists(self.collection) or self.collection in self.aliases():
            config = self.client.get_collection(self.collection).config
            check_owner(self.collection, self._path, self.owner, config.metadata or {})
            vectors = config.params.vectors
            dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
            if dense is None or dense.size != self.dim:
                found = "no 'dense' vector" if dense is None else f"dimension {dense.size}"
                raise ConfigError(
                    f"Qdrant collection {self.collection!r} has {found}, but this index needs "
                    f"'dense' vectors of dimension {self.dim}; set index.qdrant_collection to "
                    "another name or delete that collection"
                )
            return
        cluster = self.cluster
        dense = models.VectorParams(
            size=self.dim,
            distance=self._distance,
            on_disk=cluster.on_disk,
            quantization_config=_quantization(models, cluster.quantization),
        )
        sparse = models.SparseVectorParams(index=models.SparseIndexParams(on_disk=cluster.on_disk))
        counts = {name: getattr(cluster, name) for name in _COUNTS if getattr(cluster, name)}
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: dense},
            sparse_vectors_config={SPARSE: sparse},
            hnsw_config=self._hnsw,
            on_disk_payload=cluster.on_disk_payload,
            metadata={OWNER_KEY: self.owner} if self.owner else None,
            **counts,
        )

    def close(self) -> None:
        if self._path is not None:
            _LocalClients.release(self._path)
        else:
            self.client.close()

    # -- engine calls (the protocol itself is QdrantChannels') ---------------------------------
    def _put(self, update: list[tuple[int, Any]], insert: list[tuple[int, Any]]) -> None:
        models = self._models
        if update:
            points = [models.PointVectors(id=i, vector=v) for i, v in update]
            self.client.update_vectors(self.collection, points=points, wait=True)
        if insert:
            points = [models.PointStruct(id=i, vector=v) for i, v in insert]
            self.client.upsert(self.collection, points=points, wait=True)

    def _present(self, ids: np.ndarray) -> set[int]:
        found: set[int] = set()
        for start in range(0, len(ids), 4 * _BATCH):
            chunk = [int(i) for i in ids[start : start + 4 * _BATCH]]
            records = self.client.retrieve(
                self.collection, chunk, with_payload=False, with_vectors=False
            )
            found.update(int(r.id) for r in records)
        return found

    def _retrieve_sparse(self, ids: list[int]) -> Sequence[Any]:
        return self.client.retrieve(self.collection, ids, with_payload=False, with_vectors=[SPARSE])

    def _delete(self, ids: list[int]) -> None:
        selector = self._models.PointIdsList(points=ids)
        self.client.delete(self.collection, points_selector=selector, wait=True)

    def _scroll(self, offset: Any) -> tuple[Sequence[Any], Any]:
        return self.client.scroll(
            self.collection, limit=10_000, offset=offset, with_payload=False, with_vectors=False
        )

    def _nearest(self, query: Any, using: str) -> dict[str, Any]:
        return {"query": query, "using": using}

    def _fusion(self, method: str, k: int) -> Any:
        models = self._models
        if method == "rrf":
            return models.RrfQuery(rrf=models.Rrf(k=k))
        return models.FusionQuery(fusion=models.Fusion.DBSF)

    def _fused(
        self, dense: list[float], sparse: Any | None, fusion: Any, depth: int, where: Any
    ) -> dict[str, Any]:
        models = self._models
        prefetch = [
            models.Prefetch(
                query=dense, using=DENSE, limit=depth, filter=where, params=self._params
            )
        ]
        if sparse is not None:
            prefetch.append(models.Prefetch(query=sparse, using=SPARSE, limit=depth, filter=where))
        return {"prefetch": prefetch, "query": fusion}

    def _query(self, requests: list[dict[str, Any]], limit: int, where: Any) -> list[Hits]:
        models = self._models
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
        ]
        answers = self.client.query_batch_points(self.collection, requests=batch)
        return [[(p.id, p.score) for p in answer.points] for answer in answers]

    def _filter(self, allowed_ids: np.ndarray | None) -> Any:
        if allowed_ids is None:
            return None
        models = self._models
        return models.Filter(must=[models.HasIdCondition(has_id=point_ids(allowed_ids).tolist())])

    def _sparse(self, row: SparseRow) -> Any:
        return self._models.SparseVector(indices=row[0].tolist(), values=row[1].tolist())

    # -- consistency and persistence --------------------------------------------------------
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

    def drop(self) -> None:
        """Delete this index's Qdrant collection (``ragkit migrate finalize``/``abort``)."""
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)

    def remove_alias(self, alias: str) -> None:
        models = self._models
        operation = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        self.client.update_collection_aliases(change_aliases_operations=[operation])

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


@dataclass(frozen=True, kw_only=True)
class QdrantClusterSettings:
    """How a new Qdrant collection is laid out on a cluster (``[index] qdrant_*``, validated
    by :class:`~ragkit.config.IndexConfig`). A count of 0 is not sent: the server decides."""

    shard_number: int = 0
    replication_factor: int = 0
    write_consistency_factor: int = 0
    on_disk: bool = False
    on_disk_payload: bool = True
    quantization: str = "none"


_COUNTS = ("shard_number", "replication_factor", "write_consistency_factor")


def _quantization(models: Any, name: str) -> Any:
    """The dense vector's quantization; codes are kept in RAM and the original vectors rescore
    the candidates (Qdrant's default), so quantization costs little recall."""
    if name == "scalar":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
        )
    if name == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    if name == "product":
        return models.ProductQuantization(
            product=models.ProductQuantizationConfig(
                compression=models.CompressionRatio.X16, always_ram=True
            )
        )
    return None


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
