"""Index backends: one file each, resolved by name through :func:`create_dense_index`.

A new backend is one new file, one line in each function below, and a pass of the shared
conformance suite (``tests/test_index_conformance.py``).
"""

from __future__ import annotations

from pathlib import Path

from ragkit.config import IndexConfig
from ragkit.errors import ConfigError
from ragkit.indexes.base import DenseIndex, atomic_write

__all__ = [
    "DENSE_BACKENDS",
    "DENSE_SUFFIX",
    "DenseIndex",
    "atomic_write",
    "create_dense_index",
    "load_dense_index",
]

DENSE_BACKENDS = ("faiss", "qdrant", "qdrant-edge")
# The file (or folder) name suffix of one generation of each backend.
DENSE_SUFFIX = {"faiss": "faiss", "qdrant": "qdrant.json", "qdrant-edge": "qedge"}


def _unknown(config: IndexConfig) -> ConfigError:
    return ConfigError(f"index.backend={config.backend!r} is unknown; use one of {DENSE_BACKENDS}")


def create_dense_index(dim: int, config: IndexConfig, *, directory: Path, name: str) -> DenseIndex:
    if config.backend == "faiss":
        from ragkit.indexes.faiss_index import FaissIndex

        return FaissIndex(dim, config)
    if config.backend == "qdrant":
        from ragkit.indexes.qdrant_index import QdrantIndex

        return QdrantIndex.from_config(dim, config, directory=directory, name=name)
    if config.backend == "qdrant-edge":
        from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

        return QdrantEdgeIndex.from_config(dim, config, directory=directory)
    raise _unknown(config)


def load_dense_index(path: Path, dim: int, config: IndexConfig) -> DenseIndex:
    if config.backend == "faiss":
        from ragkit.indexes.faiss_index import FaissIndex

        return FaissIndex.load(path, dim, config)
    if config.backend == "qdrant":
        from ragkit.indexes.qdrant_index import QdrantIndex

        return QdrantIndex.load(path, dim, config)
    if config.backend == "qdrant-edge":
        from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

        return QdrantEdgeIndex.load(path, dim, config)
    raise _unknown(config)
