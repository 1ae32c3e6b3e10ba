"""Index backends: one file each, resolved by name through :data:`DENSE_BACKENDS`.

A new backend is one new file whose class has ``from_config`` and ``load``, one registry entry
(``@register_dense_backend`` on the class, or an import path in ``indexes/registry.py`` to keep
its dependencies lazy), and a pass of the shared conformance suite
(``tests/test_index_conformance.py``). Importing this package imports no backend library.
"""

from __future__ import annotations

from pathlib import Path

from ragkit.config import IndexConfig
from ragkit.indexes.base import (
    Closeable,
    DenseIndex,
    HoldsSparseVectors,
    NeedsRetrain,
    ReadsSparseVectors,
    SupportsAliases,
    SupportsReconcile,
    atomic_write,
)
from ragkit.indexes.registry import (
    DENSE_BACKENDS,
    DenseBackend,
    dense_backend,
    register_dense_backend,
)

__all__ = [
    "DENSE_BACKENDS",
    "Closeable",
    "DenseBackend",
    "DenseIndex",
    "HoldsSparseVectors",
    "NeedsRetrain",
    "ReadsSparseVectors",
    "SupportsAliases",
    "SupportsReconcile",
    "atomic_write",
    "close_index",
    "create_dense_index",
    "dense_backend",
    "load_dense_index",
    "register_dense_backend",
]


def create_dense_index(
    dim: int, config: IndexConfig, *, directory: Path, name: str, owner: str = ""
) -> DenseIndex:
    """A new, empty index of the configured backend. ``owner``: the workspace's identity,
    which a backend that may be shared between workspaces (a Qdrant server) marks its
    collections with and checks."""
    backend = dense_backend(config.backend)
    return backend.create(dim, config, directory=directory, name=name, owner=owner)


def load_dense_index(path: Path, dim: int, config: IndexConfig, owner: str = "") -> DenseIndex:
    """A saved generation of the configured backend."""
    return dense_backend(config.backend).load(path, dim, config, owner)


def close_index(index: object) -> None:
    """Release what an index holds (Qdrant clients and shards); FAISS and BM25 hold nothing."""
    if isinstance(index, Closeable):
        index.close()
