"""Qdrant Edge backend: Qdrant's Rust engine in-process (``qdrant-edge-py``), no server.

Why next to :mod:`ragkit.indexes.qdrant_index`: qdrant-client's embedded mode is pure Python
(exact search only, one SQLite commit per point written, one process per folder), while Edge
runs the server's own segment, HNSW and sparse-index code in this process. ``bench/QDRANT.md``
has the measurements.

Persistence follows FAISS's generations, not Qdrant's write-in-place. An Edge shard is a folder
that its engine rewrites while it is open for writing, and a second process opening a folder
that is being optimized breaks the writer (measured), so readers must never open the folder a
writer works in. Hence:

* changes go to a private *working* copy (``.dense.edge-work-*`` next to the generations);
* :meth:`QdrantEdgeIndex.save` flushes it (building the HNSW graph for ``kind="hnsw"``) and
  renames it to the generation's name — a folder that is never written again;
* an index opened from a generation copies it on its first change (copy-on-write), the way
  FAISS rewrites its whole file on every save.

Opening a shard rewrites a few of its files once (the first open normalizes them; later opens
leave the content unchanged), so ``save`` opens the new generation itself before handing it to
readers, and opens are serialized by a lock file so two readers never rewrite a file at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, IndexCorruptError, MissingDependencyError
from ragkit.indexes.qdrant_index import (
    DEFAULT_RRF_K,
    DENSE,
    PAD_SCORE,
    SPARSE,
    QdrantSparseView,
    as_matrix,
    pack_hits,
    point_ids,
    reconcile_ids,
    sparse_rows,
)

__all__ = ["QdrantEdgeIndex"]

_KINDS = ("flat", "hnsw")
_FUSIONS = ("rrf", "dbsf")
_BATCH = 1024
_WORK_PREFIX = ".dense.edge-work-"


def _import_edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:
        raise MissingDependencyError("qdrant-edge-py", "qdrant", "The Qdrant Edge backend") from exc
    return qdrant_edge


class QdrantEdgeIndex:
    """Dense + sparse named vectors in one Edge shard, with the server's fusion, in-process.

    ``QdrantEdgeIndex(dim)`` starts empty in a working folder under ``workdir`` (default: the
    system's temporary folder); :meth:`open` / :meth:`load` read a saved generation.
    ``kind="flat"`` searches exactly and never builds a graph; ``"hnsw"`` builds the HNSW graph
    at :meth:`save` (or :meth:`optimize`); points added since are searched exactly until then.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: str = "flat",
        workdir: str | Path | None = None,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        qe = _import_edge()
        if kind not in _KINDS:
            raise ConfigError(
                f"index.kind={kind!r} is not available with Qdrant Edge; use {_KINDS}"
            )
        self.dim = dim
        self.kind = kind
        self._qe = qe
        self._params = (
            qe.SearchParams(exact=True)
            if kind == "flat"
            else qe.SearchParams(hnsw_ef=hnsw_ef_search)
        )
        self._shard: Any = None
        self.path = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
        self._owned = False  # True: self.path is our private working copy, changes are allowed
        self._count = 0
        self._hnsw = (hnsw_m, hnsw_ef_construction, indexing_threshold_kb)

    def _create(self) -> None:
        """The empty working shard, made on first use so an unused index leaves no folder."""
        qe = self._qe
        m, ef_construct, threshold_kb = self._hnsw
        # indexing_threshold=0 turns graph building off: "flat" means exact, always. Below the
        # threshold (Qdrant's default: 10 MB of vectors) a segment is searched exactly anyway.
        threshold = 0 if self.kind == "flat" else threshold_kb
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Dot)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()},
            hnsw_config=qe.HnswIndexConfig(
                m=m, ef_construct=ef_construct, full_scan_threshold=10_000
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=threshold),
            wal_enabled=False,  # durability comes from save(): flush, then rename
        )
        work = _new_workdir(self.path)
        self._shard = qe.EdgeShard.create(str(work), config)
        self.path, self._owned = work, True

    @classmethod
    def from_config(cls, dim: int, config: Any, *, directory: Path) -> QdrantEdgeIndex:
        """A new, empty index whose working copy lives in the collection's folder."""
        return cls(
            dim,
            kind=config.kind,
            workdir=directory,
            hnsw_m=config.hnsw_m,
            hnsw_ef_construction=config.hnsw_ef_construction,
            hnsw_ef_search=config.hnsw_ef_search,
        )

    @classmethod
    def load(cls, path: Path, dim: int, config: Any) -> QdrantEdgeIndex:
        """Open a generation written by :meth:`save` (the ``IndexConfig`` gives search params)."""
        return cls.open(path, dim, kind=config.kind, hnsw_ef_search=config.hnsw_ef_search)

    @classmethod
    def open(
        cls, path: str | Path, dim: int, *, kind: str = "flat", hnsw_ef_search: int = 128
    ) -> QdrantEdgeIndex:
        """Read a saved generation; the first change copies it (it is never written in place)."""
        path = Path(path)
        manifest = _read_manifest(path, dim)
        index = cls(dim, kind=kind, workdir=path.parent, hnsw_ef_search=hnsw_ef_search)
        index.path = path
        with _open_lock(path):
            index._shard = index._qe.EdgeShard.load(str(path))
        index._count = index._shard.count(index._qe.CountRequest(exact=True))
        if index._count != manifest["points"]:
            index.close()
            raise IndexCorruptError(
                f"{path}: holds {index._count} points, its manifest says {manifest['points']}; "
                "run `ragkit doctor --repair`"
            )
        return index

    def _writable(self) -> Any:
        """The shard, made a private copy first if it is a saved generation (copy-on-write)."""
        if self._shard is None:
            self._create()
        elif not self._owned:
            work = _new_workdir(self.path.parent)
            work.rmdir()
            with _open_lock(self.path):
                shutil.copytree(self.path, work, ignore=_IN_FLIGHT)
            (work / _MANIFEST).unlink(missing_ok=True)
            with _open_lock(self.path):
                self._shard.close()
            self._shard = self._qe.EdgeShard.load(str(work))
            self.path, self._owned = work, True
        return self._shard

    def close(self) -> None:
        """Release the shard; an unsaved working copy is discarded with its changes."""
        if self._shard is not None:
            if self._owned:
                self._shard.close()
            else:
                with _open_lock(self.path):  # closing rewrites files too, like opening
                    self._shard.close()
            self._shard = None
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)
            self._owned = False

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
        ids = point_ids(ids)
        if not len(ids):
            return
        rows = sparse_rows(csr, len(ids))
        self._write(ids, [{SPARSE: self._sparse(row)} for row in rows])

    def _write(self, ids: np.ndarray, channels: list[dict[str, Any]]) -> None:
        qe = self._qe
        present = self._present(ids)
        shard = self._writable()
        for start in range(0, len(ids), _BATCH):
            batch = range(start, min(start + _BATCH, len(ids)))
            update = [
                qe.PointVectors(int(ids[i]), channels[i]) for i in batch if int(ids[i]) in present
            ]
            insert = [
                qe.Point(int(ids[i]), channels[i]) for i in batch if int(ids[i]) not in present
            ]
            if update:
                shard.update(qe.UpdateOperation.update_vectors(update))
            if insert:
                shard.update(qe.UpdateOperation.upsert_points(insert))
        self._count += len(set(ids.tolist()) - present)

    def _present(self, ids: np.ndarray) -> set[int]:
        if not self._count:
            return set()
        records = self._shard.retrieve([int(i) for i in ids], with_payload=False, with_vector=False)
        return {int(r.id) for r in records}

    def remove(self, ids: np.ndarray) -> bool:
        """Delete whole points in place; never asks for a rebuild."""
        present = self._present(point_ids(ids))
        if present:
            self._writable().update(self._qe.UpdateOperation.delete_points(sorted(present)))
            self._count -= len(present)
        return True

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray, *, sparse: Any = None) -> None:
        """Exactly these points afterwards (sparse only where given)."""
        self.remove(self.ids())
        self.add(ids, vectors, sparse=sparse)

    def ids(self) -> np.ndarray:
        qe = self._qe
        if self._shard is None:
            return np.zeros(0, dtype=np.int64)
        found: list[int] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False, with_vector=False)
            )
            found.extend(int(r.id) for r in records)
            if offset is None:
                return np.sort(np.array(found, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        qe = self._qe
        queries = as_matrix(queries, self.dim)
        return self._run(
            [
                {"query": qe.Query.Nearest(q.tolist(), using=DENSE), "params": self._params}
                for q in queries
            ],
            k,
            allowed_ids,
        )

    def search_sparse(
        self, queries: Any, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        qe = self._qe
        return self._run(
            [
                {"query": qe.Query.Nearest(self._sparse(row), using=SPARSE)}
                if len(row[0])
                else None
                for row in sparse_rows(queries)
            ],
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
        """Fuse a dense and a sparse top-``depth`` in the engine (RRF as textbook, see module)."""
        qe = self._qe
        if method not in _FUSIONS:
            raise ConfigError(f"fusion method {method!r} is unknown; use one of {_FUSIONS}")
        dense = as_matrix(dense_queries, self.dim)
        rows = sparse_rows(sparse_queries, len(dense))
        where = self._filter(allowed_ids)
        fusion = qe.Fusion.Rrf(k=rrf_k + 1) if method == "rrf" else qe.Fusion.Dbsf()
        requests = []
        for q, row in zip(dense, rows, strict=True):
            prefetches = [
                qe.Prefetch(
                    limit=depth,
                    query=qe.Query.Nearest(q.tolist(), using=DENSE),
                    params=self._params,
                    filter=where,
                )
            ]
            if len(row[0]):
                prefetches.append(
                    qe.Prefetch(
                        limit=depth,
                        query=qe.Query.Nearest(self._sparse(row), using=SPARSE),
                        filter=where,
                    )
                )
            requests.append({"prefetches": prefetches, "query": fusion})
        return self._run(requests, k, allowed_ids)

    def _run(
        self,
        requests: list[dict[str, Any] | None],
        k: int,
        allowed_ids: np.ndarray | None,
        *,
        sparse: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shapes as in ``QdrantIndex._run``: FAISS-like for dense/hybrid, SparseIndex-like else."""
        qe = self._qe
        width = k if sparse else min(k, len(self))
        pad = 0.0 if sparse else PAD_SCORE
        limit = min(k, len(self))
        if limit <= 0 or not requests or (allowed_ids is not None and not len(allowed_ids)):
            return pack_hits([[] for _ in requests], width, pad)
        where = self._filter(allowed_ids)
        batch = [
            qe.QueryRequest(limit=limit, filter=where, with_payload=False, with_vector=False, **r)
            for r in requests
            if r is not None
        ]
        if len(batch) == 1:
            answers = iter([self._shard.query(batch[0])])
        else:
            answers = iter(self._shard.query_batch(qe.QueryBatchRequest(batch)))
        hits = [[] if r is None else [(p.id, p.score) for p in next(answers)] for r in requests]
        return pack_hits(hits, width, pad)

    def _filter(self, allowed_ids: np.ndarray | None) -> Any:
        if allowed_ids is None:
            return None
        qe = self._qe
        return qe.Filter(must=[qe.HasIdCondition({int(i) for i in point_ids(allowed_ids)})])

    def _sparse(self, row: tuple[np.ndarray, np.ndarray]) -> Any:
        return self._qe.SparseVector(row[0].tolist(), row[1].tolist())

    def sparse_index(self) -> QdrantSparseView:
        """This shard's sparse channel seen through the ``SparseIndex`` protocol."""
        return QdrantSparseView(self)

    # -- consistency and persistence --------------------------------------------------------
    def reconcile(self, expected_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids in the shard the store lacks, store ids the shard lacks), each sorted."""
        return reconcile_ids(self.ids(), expected_ids)

    def optimize(self) -> None:
        """Build the HNSW graph and drop deleted points now (``save`` does it for ``hnsw``)."""
        if self._owned:
            self._shard.optimize()

    def save(self, path: Path) -> None:
        """Write this state as the generation folder ``path``, which is never written again.

        The working copy is flushed, closed and renamed (copied when ``path`` is on another
        file system), then opened again — read-only from now on — so that its first open, which
        rewrites a few files, happens here and not in a reader.
        """
        path = Path(path)
        if self._shard is None:
            self._create()
        staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        if self._owned:
            if self.kind == "hnsw":
                self._shard.optimize()
            self._shard.flush()
            self._shard.close()
            self._shard = None
            shutil.move(self.path, staging)
            self._owned = False
        else:
            with _open_lock(self.path):
                shutil.copytree(self.path, staging, ignore=_IN_FLIGHT)
        manifest = {"format": 1, "backend": "qdrant-edge", "dim": self.dim, "points": len(self)}
        (staging / _MANIFEST).write_text(json.dumps(manifest) + "\n", encoding="utf-8")
        shard = self._qe.EdgeShard.load(str(staging))  # the normalizing first open
        shard.flush()
        shard.close()
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        if self._shard is not None:  # the read view of the generation this was opened from
            with _open_lock(self.path):
                self._shard.close()
        with _open_lock(path):
            self._shard = self._qe.EdgeShard.load(str(path))
        self.path = path


_MANIFEST = "ragkit-manifest.json"
_IN_FLIGHT = shutil.ignore_patterns(".atomicwrite*")  # the engine's temporary files


def _new_workdir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    work = parent / f"{_WORK_PREFIX}{uuid.uuid4().hex[:12]}"
    work.mkdir()
    return work


@contextmanager
def _open_lock(shard: Path) -> Iterator[None]:
    """Serialize opens of one generation: an open rewrites files (with the same content)."""
    lock = shard.with_name(f".{shard.name}.lock")
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_manifest(path: Path, dim: int) -> dict[str, Any]:
    try:
        manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"{path}: not a saved Qdrant Edge index ({exc}); run `ragkit doctor --repair`"
        ) from exc
    if manifest.get("backend") != "qdrant-edge" or manifest.get("dim") != dim:
        raise IndexCorruptError(
            f"{path}: holds a {manifest.get('backend')!r} index of dimension "
            f"{manifest.get('dim')}; expected 'qdrant-edge', {dim}"
        )
    return manifest
