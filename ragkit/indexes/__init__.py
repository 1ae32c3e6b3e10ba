"""Index backends: one file each, resolved by name through :func:`create_dense_index`."""

from __future__ import annotations

from pathlib import Path

from ragkit.config import IndexConfig
from ragkit.errors import ConfigError
from ragkit.indexes.base import DenseIndex, atomic_write

__all__ = ["DENSE_BACKENDS", "DenseIndex", "atomic_write", "create_dense_index", "load_dense_index"]

DENSE_BACKENDS = ("faiss",)


def create_dense_index(dim: int, config: IndexConfig) -> DenseIndex:
    if config.backend == "faiss":
        from ragkit.indexes.faiss_index import FaissIndex

        return FaissIndex(dim, config)
    raise ConfigError(f"index.backend={config.backend!r} is unknown; use one of {DENSE_BACKENDS}")


def load_dense_index(path: Path, dim: int, config: IndexConfig) -> DenseIndex:
    if config.backend == "faiss":
        from ragkit.indexes.faiss_index import FaissIndex

        return FaissIndex.load(path, dim, config)
    raise ConfigError(f"index.backend={config.backend!r} is unknown; use one of {DENSE_BACKENDS}")
