"""Dense index backends by name (``[index] backend``): a dict of descriptors and a decorator.

A backend is a class with ``from_config`` (a new, empty index) and ``load`` (a saved
generation), registered with the file suffix of one generation. The suffix is kept beside the
import path so that naming a generation's file (``Collection.dense_path``, the stray-file
check) never imports faiss or qdrant; the class is imported when an index is built or opened.
The optional abilities a backend may have are protocols in :mod:`ragkit.indexes.base`; one
that several workspaces may share (a Qdrant server) also takes an ``owner`` keyword in both,
the workspace's identity, to tell its own collections from another workspace's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragkit.registry import Registry, import_target

if TYPE_CHECKING:
    from ragkit.config import IndexConfig
    from ragkit.indexes.base import DenseIndex

__all__ = [
    "DENSE_BACKENDS",
    "DenseBackend",
    "DenseIndexClass",
    "dense_backend",
    "register_dense_backend",
]


class DenseIndexClass(Protocol):
    """What a backend class offers the registry: build an empty index, or open a saved one."""

    def from_config(
        self, dim: int, config: IndexConfig, *, directory: Path, name: str
    ) -> DenseIndex: ...

    def load(self, path: Path, dim: int, config: IndexConfig) -> DenseIndex: ...


@dataclass(frozen=True)
class DenseBackend:
    """One registry entry: the generation file suffix and the class (or its import path)."""

    name: str
    suffix: str
    target: DenseIndexClass | str

    @property
    def cls(self) -> DenseIndexClass:
        if isinstance(self.target, str):
            return import_target(self.target)  # type: ignore[no-any-return]
        return self.target

    def create(
        self, dim: int, config: IndexConfig, *, directory: Path, name: str, owner: str = ""
    ) -> DenseIndex:
        cls = self.cls
        if _takes_owner(cls.from_config):
            return cls.from_config(dim, config, directory=directory, name=name, owner=owner)
        return cls.from_config(dim, config, directory=directory, name=name)

    def load(self, path: Path, dim: int, config: IndexConfig, owner: str = "") -> DenseIndex:
        cls = self.cls
        if _takes_owner(cls.load):
            return cls.load(path, dim, config, owner=owner)
        return cls.load(path, dim, config)


def _takes_owner(method: Callable[..., Any]) -> bool:
    """Whether a backend method has the optional ``owner`` keyword (a backend written before
    it, or one that is never shared between workspaces, need not)."""
    return "owner" in inspect.signature(method).parameters


DENSE_BACKENDS: Registry[DenseBackend] = Registry("dense index backend", "index.backend")


def register_dense_backend(name: str, *, suffix: str) -> Callable[[Any], Any]:
    """Decorator over a backend class: ``@register_dense_backend("mine", suffix="mine")``."""

    def decorate(cls: Any) -> Any:
        DENSE_BACKENDS.add(name, DenseBackend(name, suffix, cls))
        return cls

    return decorate


def dense_backend(name: str) -> DenseBackend:
    """The backend ``name``; a ConfigError listing the known ones when there is none."""
    return DENSE_BACKENDS.get(name)


# The shipped backends, by import path: listing them imports neither faiss nor qdrant.
for _name, _suffix, _target in (
    ("faiss", "faiss", "ragkit.indexes.faiss_index:FaissIndex"),
    ("qdrant", "qdrant.json", "ragkit.indexes.qdrant_index:QdrantIndex"),
    ("qdrant-edge", "qedge", "ragkit.indexes.qdrant_edge_index:QdrantEdgeIndex"),
):
    DENSE_BACKENDS.add(_name, DenseBackend(_name, _suffix, _target))
