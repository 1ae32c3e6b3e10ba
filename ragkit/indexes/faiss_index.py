"""FAISS dense index: exact flat inner product (default), HNSW, IVF-PQ with exact refine, int8
(scalar-quantized, 4x smaller), or binary (RaBitQ: one bit per dimension, ~27x smaller, rescored
with int8 codes unless ``refine = false``).

Trained structures (ivfpq, int8, binary) learn from the vectors they are built on, so while the
collection is small they ask to be rebuilt from the store each time it doubles
(:meth:`FaissIndex.needs_retrain`): a workspace that grew by small ingests is then trained on at
least half of its vectors, up to ``_TRAIN_TARGET``.

A GPU copy serves searches when ``faiss.get_num_gpus() > 0``; the CPU index stays the one that
is saved. A single query runs on one OpenMP thread: on small machines that is several times
faster than spreading one query over all cores; batches use every core.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ragkit.config import IndexConfig
from ragkit.errors import ConfigError, IndexCorruptError
from ragkit.indexes.base import atomic_write

__all__ = ["FaissIndex"]

_KINDS = ("flat", "hnsw", "ivfpq", "int8", "binary")
_TRAINED = ("ivfpq", "int8", "binary")
_EXACT_SUBSET_LIMIT = 50_000  # allowed ids scored exactly below this (filtered ANN search)
_TRAIN_TARGET = 20_000  # trained on at least half of this many vectors once the index is larger


@contextmanager
def _omp_threads(n: int):  # type: ignore[no-untyped-def]
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class FaissIndex:
    def __init__(self, dim: int, config: IndexConfig, index: Any | None = None) -> None:
        if config.kind not in _KINDS:
            raise ConfigError(f"index.kind={config.kind!r} is unknown; use one of {_KINDS}")
        self.dim = dim
        self.config = config
        self._index = index if index is not None else self._flat()
        self._gpu: Any | None = None

    @classmethod
    def from_config(
        cls, dim: int, config: IndexConfig, *, directory: Path, name: str = ""
    ) -> FaissIndex:
        """A new, empty index (the registry's constructor; a FAISS index lives in memory until
        saved, so the collection's folder and name are not needed)."""
        return cls(dim, config)

    # -- construction -----------------------------------------------------------------------
    def _flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _structure_for(self, n: int) -> Any:
        cfg = self.config
        if cfg.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = cfg.hnsw_ef_construction
            inner.hnsw.efSearch = cfg.hnsw_ef_search
            return faiss.IndexIDMap2(inner)
        if cfg.kind == "int8":
            return faiss.IndexIDMap2(
                faiss.IndexScalarQuantizer(
                    self.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                )
            )
        if cfg.kind == "binary":
            description = "RaBitQ,Refine(SQ8)" if cfg.refine else "RaBitQ"
            return faiss.IndexIDMap2(
                faiss.index_factory(self.dim, description, faiss.METRIC_INNER_PRODUCT)
            )
        if cfg.kind == "ivfpq":
            nlist = self._nlist_for(n)
            pq_m = cfg.pq_m or _largest_divisor_at_most(self.dim, max(1, self.dim // 8))
            # Training needs enough points per centroid; below that, exact search is also fast.
            if n < self._ivfpq_minimum(n):
                return self._flat()
            description = f"IVF{nlist},PQ{pq_m}x{cfg.pq_bits}"
            if cfg.refine:
                description += ",RFlat"
            return faiss.IndexIDMap2(
                faiss.index_factory(self.dim, description, faiss.METRIC_INNER_PRODUCT)
            )
        return self._flat()

    def _nlist_for(self, n: int) -> int:
        return self.config.ivf_nlist or max(1, int(4 * math.sqrt(max(n, 1))))

    def _ivfpq_minimum(self, n: int) -> int:
        return 39 * max(self._nlist_for(n), 2**self.config.pq_bits)

    def needs_retrain(self, n_new: int) -> bool:
        """Whether adding ``n_new`` vectors should rebuild (and retrain) from all vectors."""
        n = len(self)
        if self.config.kind not in _TRAINED or n == 0 or n_new == 0:
            return False  # an empty index is built by add() itself
        total = n + n_new
        if self.config.kind == "ivfpq":
            inner = faiss.downcast_index(self._index.index)
            if isinstance(inner, faiss.IndexFlat):
                return total >= self._ivfpq_minimum(total)
        return n < _TRAIN_TARGET and total >= 2 * n

    @property
    def structure(self) -> str:
        """What is actually built: ivfpq falls back to flat until there is enough to train."""
        inner = faiss.downcast_index(self._index.index)
        return type(inner).__name__

    # -- protocol ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = _as_matrix(vectors, self.dim)
        if self.config.kind != "flat" and len(self) == 0:
            self.rebuild(ids, vectors)
            return
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._gpu = None

    def remove(self, ids: np.ndarray) -> bool:
        if len(ids) == 0:
            return True
        if self.structure.startswith("IndexHNSW"):
            return False  # HNSW graphs cannot drop nodes; the caller rebuilds from the store
        try:
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
        except RuntimeError:  # e.g. IndexRefine: no in-place removal
            return False
        self._gpu = None
        return True

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _as_matrix(vectors, self.dim)
        index = self._structure_for(len(ids))
        if not index.is_trained:
            with _omp_threads(os.cpu_count() or 1):
                index.train(vectors)
        if len(ids):
            index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._set_search_params(index)
        self._index = index
        self._gpu = None

    def _set_search_params(self, index: Any) -> None:
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexRefine):
            inner.k_factor = float(self.config.refine_k_factor)
            inner = faiss.downcast_index(inner.base_index)
        if isinstance(inner, faiss.IndexIVF):
            inner.nprobe = self.config.ivf_nprobe
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.config.hnsw_ef_search

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = _as_matrix(queries, self.dim)
        k = max(1, min(k, len(self))) if len(self) else 0
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        params = None
        approximate = not self.structure.startswith("IndexFlat")
        if allowed_ids is not None and approximate and len(allowed_ids) <= _EXACT_SUBSET_LIMIT:
            # An ANN graph or inverted list searched through a selective filter can run out of
            # reachable candidates and return fewer than k; the allowed vectors alone are few
            # enough to score exactly.
            return self._search_subset(queries, k, allowed_ids)
        if allowed_ids is not None:
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            )
        threads = 1 if len(queries) == 1 else (os.cpu_count() or 1)
        with _omp_threads(threads):
            index = self._searcher() if params is None else self._index
            scores, ids = index.search(queries, k, params=params)
        return scores, ids

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.intersect1d(np.asarray(allowed_ids, dtype=np.int64), self.ids())
        scores = np.full((len(queries), k), -np.finfo(np.float32).max, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        if len(ids) == 0:
            return scores, found
        vectors = self._index.reconstruct_batch(ids)
        similarities = queries @ vectors.T
        top = min(k, len(ids))
        order = np.argsort(-similarities, axis=1, kind="stable")[:, :top]
        scores[:, :top] = np.take_along_axis(similarities, order, axis=1)
        found[:, :top] = ids[order]
        return scores, found

    def _searcher(self) -> Any:
        if (
            self._gpu is None
            and faiss.get_num_gpus() > 0
            and hasattr(faiss, "StandardGpuResources")
        ):
            try:
                self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self._index)
            except RuntimeError:  # a structure without a GPU implementation stays on the CPU
                self._gpu = self._index
        return self._gpu if self._gpu is not None else self._index

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        atomic_write(path, lambda tmp: faiss.write_index(self._index, str(tmp)))

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> FaissIndex:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(
                f"{path}: cannot read the FAISS index ({exc}); run `ragkit doctor --repair`"
            ) from exc
        if index.d != dim:
            raise IndexCorruptError(f"{path}: dimension {index.d}, expected {dim}")
        loaded = cls(dim, config, index)  # read_index already returns the concrete type
        loaded._set_search_params(loaded._index)
        return loaded


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))
    return matrix


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)
