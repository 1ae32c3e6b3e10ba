"""The small protocol every dense index backend implements, the optional abilities some have,
and atomic file helpers.

An optional ability is its own protocol, checked with ``isinstance`` where it is used (the
collection writer, doctor), never with ``hasattr``: :class:`SupportsReconcile` (a backend
written in place, which may hold writes of a batch whose store transaction rolled back),
:class:`HoldsSparseVectors` (a sparse vector beside the dense one, fused in the engine),
:class:`SupportsAliases` (engine aliases that follow the store's),
:class:`ReadsSparseVectors` (gives its points' sparse vectors back, for ``ragkit doctor``),
:class:`NeedsRetrain` (a trained structure that wants a rebuild once the data has outgrown
what it was trained on) and :class:`Closeable` (a backend holding a client, a folder lock or
an open shard). A backend declares one by having its method.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Closeable",
    "DenseIndex",
    "Droppable",
    "HoldsSparseVectors",
    "NeedsRetrain",
    "ReadsSparseVectors",
    "SupportsAliases",
    "SupportsReconcile",
    "atomic_write",
]


@runtime_checkable
class DenseIndex(Protocol):
    """Vectors keyed by int64 chunk ids; scores are inner products (cosine on unit vectors)."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; False when the structure cannot delete in place and must be rebuilt."""
        ...

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each of shape (len(queries), k); missing slots have id -1."""
        ...

    def ids(self) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...


@runtime_checkable
class SupportsReconcile(Protocol):
    """An index written in place (a Qdrant server or folder), not per generation file."""

    def reconcile(self, expected_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(extra, missing)``: ids held but not expected, and expected but not held."""
        ...


@runtime_checkable
class NeedsRetrain(Protocol):
    """A trained structure (FAISS ivfpq, int8, binary) that adding to may outgrow."""

    def needs_retrain(self, n_new: int) -> bool:
        """Whether adding ``n_new`` vectors should rebuild (and retrain) from all vectors."""
        ...


@runtime_checkable
class HoldsSparseVectors(Protocol):
    """An index whose points also hold a sparse vector and can fuse both rankings itself
    (Qdrant's named vectors and prefetch + RRF / DBSF)."""

    def add_sparse(self, ids: np.ndarray, csr: object) -> None:
        """Sparse vectors for these points; a point keeps its dense vector."""
        ...

    def search_hybrid(
        self,
        dense_queries: np.ndarray,
        sparse_queries: object,
        k: int,
        *,
        method: str = "rrf",
        depth: int = 100,
        rrf_k: int = 60,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of the fused top-``depth`` of each channel, fused scores."""
        ...


@runtime_checkable
class ReadsSparseVectors(Protocol):
    """Gives back the sparse vectors its points hold, so that they can be compared with the
    sparse channel they were copied from."""

    def sparse_vectors(self, ids: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(indices, values) per point among ``ids`` that holds a sparse vector."""
        ...


@runtime_checkable
class SupportsAliases(Protocol):
    """An engine with its own aliases (Qdrant), which follow the store's: ``collection`` is
    the engine's name for this index's data."""

    collection: str

    def set_alias(self, alias: str, collection: str) -> None: ...

    def remove_alias(self, alias: str) -> None: ...

    def aliases(self) -> dict[str, str]: ...


@runtime_checkable
class Droppable(Protocol):
    """Keeps its vectors outside the collection's folder (a Qdrant server, or a Qdrant store
    at an explicit ``qdrant_path``): deleting the collection's files does not delete them."""

    def drop(self) -> None: ...


@runtime_checkable
class Closeable(Protocol):
    """Holds a client, lock or open shard that must be released."""

    def close(self) -> None: ...


def atomic_write(path: Path, write: object) -> None:
    """Write through ``write(tmp_path)``, fsync, then rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)  # type: ignore[operator]
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if tmp.exists():
            tmp.unlink()
