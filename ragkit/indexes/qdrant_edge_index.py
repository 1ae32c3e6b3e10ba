"""Qdrant Edge backend: Qdrant's Rust engine in-process (``qdrant-edge-py``), no server.

Why next to :mod:`ragkit.indexes.qdrant_index`: qdrant-client's embedded mode is pure Python
(exact search only, one SQLite commit per point written, one process per folder), while Edge
runs the server's own segment, HNSW and sparse-index code in this process. ``bench/QDRANT.md``
has the measurements. Both store the same points and answer alike: the index protocol is
:class:`~ragkit.indexes.qdrant_common.QdrantChannels`, this module the Edge engine calls under it.

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
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import IndexCorruptError
from ragkit.indexes.qdrant_common import (
    DENSE,
    SPARSE,
    Hits,
    QdrantChannels,
    SparseRow,
    check_kind,
    import_extra,
    point_ids,
    read_manifest,
    write_manifest,
)

__all__ = ["QdrantEdgeIndex"]

_WORK_PREFIX = ".dense.edge-work-"


class QdrantEdgeIndex(QdrantChannels):
    """Dense + sparse named vectors in one Edge shard, with the server's fusion, in-process.

    ``QdrantEdgeIndex(dim)`` starts empty in a working folder under ``workdir`` (default: the
    system's temporary folder); :meth:`open` / :meth:`load` read a saved generation.
    ``kind="flat"`` searches exactly and never builds a graph; ``"hnsw"`` builds the HNSW graph
    at :meth:`save` (or :meth:`optimize`); points added since are searched exactly until then.
    """

    _batch = 1024

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
        qe = import_extra("qdrant_edge", "qdrant-edge-py", "The Qdrant Edge backend")
        check_kind(kind, "Qdrant Edge")
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
    def from_config(
        cls, dim: int, config: Any, *, directory: Path, name: str = ""
    ) -> QdrantEdgeIndex:
        """A new, empty index whose working copy lives in the collection's folder (``name``,
        the collection's, is not needed: an Edge shard is the collection's own)."""
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
        manifest = read_manifest(path / _MANIFEST, dim, "qdrant-edge")
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

    # -- engine calls (the protocol itself is QdrantChannels') ---------------------------------
    def _put(self, update: list[tuple[int, Any]], insert: list[tuple[int, Any]]) -> None:
        qe = self._qe
        shard = self._writable()
        if update:
            points = [qe.PointVectors(i, v) for i, v in update]
            shard.update(qe.UpdateOperation.update_vectors(points))
        if insert:
            shard.update(qe.UpdateOperation.upsert_points([qe.Point(i, v) for i, v in insert]))

    def _present(self, ids: np.ndarray) -> set[int]:
        if not self._count:
            return set()
        records = self._shard.retrieve([int(i) for i in ids], with_payload=False, with_vector=False)
        return {int(r.id) for r in records}

    def _retrieve_sparse(self, ids: list[int]) -> Sequence[Any]:
        if self._shard is None:
            return []
        return self._shard.retrieve(ids, with_payload=False, with_vector=[SPARSE])

    def _delete(self, ids: list[int]) -> None:
        self._writable().update(self._qe.UpdateOperation.delete_points(ids))

    def _scroll(self, offset: Any) -> tuple[Sequence[Any], Any]:
        if self._shard is None:  # never written: no shard, no points
            return [], None
        request = self._qe.ScrollRequest(
            offset=offset, limit=10_000, with_payload=False, with_vector=False
        )
        return self._shard.scroll(request)

    def _nearest(self, query: Any, using: str) -> dict[str, Any]:
        request: dict[str, Any] = {"query": self._qe.Query.Nearest(query, using=using)}
        if using == DENSE:
            request["params"] = self._params
        return request

    def _fusion(self, method: str, k: int) -> Any:
        return self._qe.Fusion.Rrf(k=k) if method == "rrf" else self._qe.Fusion.Dbsf()

    def _fused(
        self, dense: list[float], sparse: Any | None, fusion: Any, depth: int, where: Any
    ) -> dict[str, Any]:
        qe = self._qe
        prefetches = [
            qe.Prefetch(
                limit=depth,
                query=qe.Query.Nearest(dense, using=DENSE),
                params=self._params,
                filter=where,
            )
        ]
        if sparse is not None:
            prefetches.append(
                qe.Prefetch(limit=depth, query=qe.Query.Nearest(sparse, using=SPARSE), filter=where)
            )
        return {"prefetches": prefetches, "query": fusion}

    def _query(self, requests: list[dict[str, Any]], limit: int, where: Any) -> list[Hits]:
        qe = self._qe
        batch = [
            qe.QueryRequest(limit=limit, filter=where, with_payload=False, with_vector=False, **r)
            for r in requests
        ]
        if len(batch) == 1:
            answers = [self._shard.query(batch[0])]
        else:
            answers = self._shard.query_batch(qe.QueryBatchRequest(batch))
        return [[(p.id, p.score) for p in points] for points in answers]

    def _filter(self, allowed_ids: np.ndarray | None) -> Any:
        if allowed_ids is None:
            return None
        qe = self._qe
        return qe.Filter(must=[qe.HasIdCondition({int(i) for i in point_ids(allowed_ids)})])

    def _sparse(self, row: SparseRow) -> Any:
        return self._qe.SparseVector(row[0].tolist(), row[1].tolist())

    # -- persistence ------------------------------------------------------------------------
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
        fields = {"backend": "qdrant-edge", "dim": self.dim, "points": len(self)}
        write_manifest(staging / _MANIFEST, fields)
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
