"""The small protocol every dense index backend implements, and atomic file helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DenseIndex", "atomic_write"]


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
